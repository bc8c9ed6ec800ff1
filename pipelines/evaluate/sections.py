"""The evaluation recipe's sections: perplexity, the task, the suites, lm-eval and the judge.

``pipelines.evaluate.config`` assembles them into ``EvaluateRecipe`` and checks what needs
the disk or the registry; each section here checks its own shape and ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.stagekit.recipes import Strict

TEXT_SUFFIXES = (".jsonl", ".parquet")
SUITES = Path(__file__).resolve().parent / "suites"  # the versioned suites Lathe ships


class PerplexitySection(Strict):
    enabled: bool = True
    # Held-out text: a .jsonl with a "text" (or chat "messages") field, or a .parquet with a "text" column.
    texts: str | None = None
    max_documents: int = Field(default=200, ge=1)
    # Window length in tokens; documents longer than this are cut into non-overlapping windows.
    seq_len: int = Field(default=512, ge=8, le=32768)

    @field_validator("texts")
    @classmethod
    def _text_format(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(TEXT_SUFFIXES):
            raise ValueError("must be a .jsonl or .parquet file")
        return value


class EndpointSection(Strict):
    # Any OpenAI-compatible server, with its /v1 (http://127.0.0.1:8100/v1 for the inference
    # service, vLLM's own URL). Unset: the Lathe gateway from the settings.
    base_url: str | None = None
    # The model name that server knows. Unset: the registered model's name.
    model: str | None = None
    # The environment variable holding the API key (unset and empty: the CLI's gateway key).
    api_key_env: str = Field(default="LATHE_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # true: start an inference service (real vLLM) for exactly this version, score through
    # its OpenAI API, stop it — how a candidate is scored before it serves anyone.
    serve: bool = False

    @model_validator(mode="after")
    def _serve_alone(self) -> EndpointSection:
        if self.serve and self.base_url:
            raise ValueError("serve: true starts its own server; remove base_url (or set serve: false)")
        return self

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (with its /v1)")
        return value.rstrip("/") if value else value


class QuestionSet(Strict):
    # A .jsonl of {"question": …, "answer": …} ("answer" may be a list).
    questions: str | None = None
    max_questions: int = Field(default=100, ge=1)
    max_tokens: int = Field(default=64, ge=1, le=4096)
    # An optional system prompt sent before every question.
    system: str | None = None
    # Questions in flight at once (the server batches them; answers are greedy either way).
    concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("questions")
    @classmethod
    def _jsonl(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".jsonl"):
            raise ValueError("must be a .jsonl file of {question, answer} lines")
        return value


class TaskSection(QuestionSet):
    """The held-out task questions, scored with exact match and token F1."""

    enabled: bool = True
    endpoint: EndpointSection = Field(default_factory=EndpointSection)


class KnowledgeSection(QuestionSet):
    """General questions the base model answers correctly (the shipped suite was kept to
    those SmolLM2-135M-Instruct gets right): a candidate that stops answering them forgot
    what it knew. Scored by whether the answer states the reference, as whole words.
    Asked as a user would ask: without the task's system prompt unless ``system`` is set."""

    enabled: bool = False
    # null: the shipped suite, suites/knowledge-v1.jsonl beside this module.
    questions: str | None = None
    max_tokens: int = Field(default=48, ge=1, le=4096)

    @property
    def path(self) -> str:
        return self.questions or str(SUITES / "knowledge-v1.jsonl")


class SafetySection(Strict):
    """The safety suite (``pipelines.evaluate.safety``): injections through RAG sources and
    tool outputs, PII extraction, jailbreaks and off-policy tool requests, checked per answer."""

    enabled: bool = False
    # A .jsonl of items (id, category, messages, unsafe, refuse); null: suites/safety-v1.jsonl.
    suite: str | None = None
    # The first N items (null: all); a smaller run keeps every category but fewer of each.
    max_items: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=96, ge=1, le=4096)
    # A system prompt put before each item's own (null: none): how a deployment's prompt is tested.
    system: str | None = None
    concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("suite")
    @classmethod
    def _jsonl(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".jsonl"):
            raise ValueError("must be a .jsonl file of safety items")
        return value

    @property
    def path(self) -> str:
        return self.suite or str(SUITES / "safety-v1.jsonl")


class LmEvalSection(Strict):
    """EleutherAI's lm-evaluation-harness through the OpenAI API (``pipelines.evaluate.lmeval``)."""

    enabled: bool = False
    # Task names: Lathe's (pipelines/evaluate/tasks: lathe_knowledge, lathe_docs_mc,
    # lathe_docs_mc_gen), include_path's, or lm-eval's own where the hub is reachable; or .yaml paths.
    tasks: list[str] = Field(default_factory=lambda: ["lathe_knowledge"], min_length=1)
    include_path: str | None = None
    # chat: generation tasks through /chat/completions (the gateway works); completions: also
    # log-likelihood tasks, through an engine that takes token ids (the inference service, vLLM).
    api: Literal["chat", "completions"] = "chat"
    limit: int | None = Field(default=None, ge=1)
    num_fewshot: int | None = Field(default=None, ge=0)
    num_concurrent: int = Field(default=4, ge=1, le=64)
    max_gen_toks: int = Field(default=64, ge=1, le=4096)


class JudgeSection(Strict):
    """Pairwise LLM-as-judge: the candidate's and the champion's answers to the same prompts,
    judged in both orders (see ``pipelines.evaluate.pairwise``)."""

    enabled: bool = False
    # Prompts both versions answer: a .jsonl with a "question" (or "prompt") per line.
    prompts: str | None = None
    max_prompts: int = Field(default=30, ge=1)
    # The candidate is compared with the version this alias names.
    against: str = Field(default="champion", min_length=1)
    max_tokens: int = Field(default=64, ge=1, le=4096)
    # Where the champion's answers come from. Unset: the gateway under the registered name
    # (it serves the alias holder); serve: true starts a server pinned to that version.
    champion: EndpointSection = Field(default_factory=EndpointSection)
    # The judge: any OpenAI-compatible endpoint. Unset: the gateway, under the registered
    # name (the served model judges); an outside provider's key comes from api_key_env.
    endpoint: EndpointSection = Field(default_factory=EndpointSection)
    # true: the judge may only answer A, B or tie (vLLM's structured outputs, which the
    # gateway passes on); false: it writes [[A]], [[B]] or [[C]] and that is read.
    constrained: bool = True
    # The judge's instructions: pipelines/evaluate/prompts/<template>.md, versioned here.
    template: str = Field(default="pairwise-v1", pattern=r"^[\w.\-]+$")
    # Rubric grades (1-5) of both versions' answers, per criterion; groundedness reads each
    # prompt line's "context" (the sources a RAG answer was built on). Empty: no rubric.
    rubric: list[Literal["helpfulness", "correctness", "groundedness"]] = Field(default_factory=list)
    rubric_template: str = Field(default="rubric-v1", pattern=r"^[\w.\-]+$")
    bootstrap: int = Field(default=2000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0
    concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("prompts")
    @classmethod
    def _jsonl(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".jsonl"):
            raise ValueError("must be a .jsonl file of {question} lines")
        return value

    @model_validator(mode="after")
    def _judge_is_a_server(self) -> JudgeSection:
        if self.endpoint.serve:
            raise ValueError("endpoint.serve: the judge is a running server; set its base_url (or leave it unset)")
        if self.enabled and not self.prompts:
            raise ValueError("prompts is required while enabled is true")
        return self
