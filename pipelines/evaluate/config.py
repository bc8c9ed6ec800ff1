"""The evaluation recipe: which model, which held-out text, which questions, where to log.

    recipe = load_recipe(EvaluateRecipe, "pipelines/recipes/evaluate.yaml", {"model": "models:/m/3"})
    preflight(recipe)    # files exist, the model resolves; raises ConfigError naming the field

Shape and ranges are checked by pydantic when the recipe loads; what needs the disk or
the registry is checked by ``preflight`` before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lathe.errors import ConfigError, LatheError
from lathe.registry import ModelRegistry, ModelVersionInfo, parse_model_uri
from pipelines.stagekit.recipes import MlflowSection, Strict

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


class EvaluateMlflowSection(MlflowSection):
    experiment: str = "lathe-evaluation"

    @model_validator(mode="after")
    def _registers_nothing(self) -> EvaluateMlflowSection:
        if self.register_as or self.alias:
            raise ValueError("evaluation registers no model: remove register_as and alias (the gate moves aliases)")
        return self


class EvaluateRecipe(Strict):
    kind: Literal["evaluate"] = "evaluate"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    # models:/NAME/VERSION, models:/NAME@ALIAS, or a local Hugging Face folder.
    model: str = Field(min_length=1)
    perplexity: PerplexitySection = Field(default_factory=PerplexitySection)
    task: TaskSection = Field(default_factory=TaskSection)
    knowledge: KnowledgeSection = Field(default_factory=KnowledgeSection)
    safety: SafetySection = Field(default_factory=SafetySection)
    lm_eval: LmEvalSection = Field(default_factory=LmEvalSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    mlflow: EvaluateMlflowSection = Field(default_factory=EvaluateMlflowSection)

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        if value.startswith("models:/"):
            try:
                parse_model_uri(value)
            except LatheError as exc:
                raise ValueError(exc.one_line()) from None
        return value

    @model_validator(mode="after")
    def _something_to_do(self) -> EvaluateRecipe:
        sections = (self.perplexity, self.task, self.knowledge, self.safety, self.lm_eval, self.judge)
        if not any(section.enabled for section in sections):
            raise ValueError("perplexity, task, knowledge, safety, lm_eval and judge are all off: nothing to evaluate")
        if self.perplexity.enabled and not self.perplexity.texts:
            raise ValueError("perplexity.texts is required while perplexity.enabled is true")
        if self.task.enabled and not self.task.questions:
            raise ValueError("task.questions is required while task.enabled is true")
        return self

    @property
    def is_registered(self) -> bool:
        return self.model.startswith("models:/")


def preflight(recipe: EvaluateRecipe, registry: ModelRegistry | None = None) -> ModelVersionInfo | None:
    """Everything checkable before a model loads; returns the registry version, if the model is one."""
    if recipe.perplexity.enabled:
        _require_file(recipe.perplexity.texts, "perplexity.texts")
    if recipe.task.enabled:
        _require_file(recipe.task.questions, "task.questions")
        if recipe.task.endpoint.serve and not recipe.is_registered:
            raise ConfigError(
                "task.endpoint.serve: serving needs a registered model (models:/NAME/VERSION or models:/NAME@ALIAS)",
                param="task.endpoint.serve",
            )
        if recipe.task.endpoint.model is None and not recipe.is_registered:
            raise ConfigError(
                "task.endpoint.model: required when model is a local folder (the server's name for it)",
                param="task.endpoint.model",
            )
    _check_inputs(recipe)
    if recipe.judge.enabled and not recipe.is_registered:
        raise ConfigError(
            "judge.enabled: comparing with a champion needs a registered model (models:/NAME/VERSION)",
            param="judge.enabled",
        )
    if not recipe.is_registered:
        folder = Path(recipe.model)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"model: {folder} is not a Hugging Face model folder (no config.json)",
                param="model",
                hint="give models:/NAME/VERSION, models:/NAME@ALIAS or a folder",
            )
        return None
    if registry is None:
        raise ConfigError(f"model: {recipe.model} needs the registry", param="model")
    return registry.locate(parse_model_uri(recipe.model))


def _check_inputs(recipe: EvaluateRecipe) -> None:
    """The suites, questions and prompts read whole, so a bad line fails before a model loads."""
    from pipelines.evaluate.inputs import load_prompts, load_questions
    from pipelines.evaluate.safety import load_suite

    if recipe.task.enabled:
        load_questions(recipe.task.questions or "", recipe.task.max_questions)
    if recipe.knowledge.enabled:
        _require_file(recipe.knowledge.path, "knowledge.questions")
        load_questions(recipe.knowledge.path, recipe.knowledge.max_questions, "knowledge.questions")
    if recipe.safety.enabled:
        _require_file(recipe.safety.path, "safety.suite")
        load_suite(recipe.safety.path)
    if recipe.judge.enabled:
        _require_file(recipe.judge.prompts, "judge.prompts")
        load_prompts(recipe.judge.prompts or "", recipe.judge.max_prompts)
    if recipe.lm_eval.enabled:
        from pipelines.evaluate.lmeval import check_tasks

        check_tasks(recipe.lm_eval)


def _require_file(path: str | None, field: str) -> None:
    if path is None or not Path(path).is_file():
        where = Path(path).resolve() if path else "(unset)"
        raise ConfigError(
            f"{field}: no such file {path} ({where})",
            param=field,
            hint="build the demo data with `make demo-data`" if path and ".lathe/data" in path else None,
        )
