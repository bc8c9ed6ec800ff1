"""The evaluation harness: perplexity computed here, the task score through the OpenAI API.

    summary = evaluate(load_recipe(EvaluateRecipe, "pipelines/recipes/evaluate.yaml"))

Perplexity needs the weights, so the model is loaded locally (a registry version is
downloaded once under ``LATHE_HOME/models``). The task score goes through an
OpenAI-compatible endpoint (the gateway, the inference service, a vLLM) with the
official SDK, so the same harness scores anything that speaks the API. Results land in
an MLflow run (``lathe.stage=evaluate``) and, for a registry version, as ``lathe.eval.*``
tags on that version, where the promotion gate reads them.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError
from lathe.jobs import run_url
from lathe.promotion import EVAL_RUN_TAG, eval_tag
from lathe.registry import ModelRegistry, ModelVersionInfo
from pipelines.evaluate.chat import Endpoint, ask
from pipelines.evaluate.config import EvaluateRecipe, preflight
from pipelines.evaluate.inputs import load_prompts, load_questions, load_texts
from pipelines.evaluate.judging import answer_all, champion_of, judge_metrics, run_judge
from pipelines.evaluate.lmeval import run_lm_eval
from pipelines.evaluate.metrics import contains_answer, exact_match, perplexity, token_f1
from pipelines.evaluate.record import log_run
from pipelines.evaluate.safety import first_of_each, load_suite, run_suite, safety_metrics
from pipelines.evaluate.serve import open_endpoint

# ``progress(label, total)`` returns the callback to call once per item done.
ProgressFactory = Callable[[str, int], Callable[[], None]]


def _no_progress(label: str, total: int) -> Callable[[], None]:
    return lambda: None


def tracking_uri() -> str:
    from pipelines.stagekit.settings import load_pipeline_settings

    return load_pipeline_settings().tracking_uri()


# -- the task score -----------------------------------------------------------------
def score_task(
    base_url: str,
    model: str,
    api_key: str | None,
    questions: list[dict[str, Any]],
    max_tokens: int,
    *,
    system: str | None = None,
    on_question: Callable[[], None] | None = None,
    timeout_s: float = 120.0,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Ask every question at temperature 0 through an OpenAI-compatible server; score the answers.

    Returns ``exact_match`` and ``token_f1`` (means), ``n``, the versions that answered
    (the gateway's ``x-lathe-backend-version`` header, when there is one) and one row per question.
    """
    endpoint = Endpoint(base_url, model, api_key)
    client = endpoint.client(timeout_s)
    served: set[str] = set()

    def one(item: dict[str, Any]) -> dict[str, Any]:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": item["question"]}
        ]
        prediction, version = ask(client, endpoint, messages, max_tokens)
        if version:
            served.add(version)
        if on_question is not None:
            on_question()
        return {
            "question": item["question"],
            "answer": item["answer"] if isinstance(item["answer"], str) else " | ".join(item["answer"]),
            "prediction": prediction,
            "exact_match": exact_match(prediction, item["answer"]),
            "token_f1": token_f1(prediction, item["answer"]),
            "contains": contains_answer(prediction, item["answer"]),
        }

    # Several questions in flight: the server batches them (vLLM), the order of rows stays.
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        rows = list(pool.map(one, questions))
    return {
        "exact_match": statistics.fmean(r["exact_match"] for r in rows) if rows else 0.0,
        "token_f1": statistics.fmean(r["token_f1"] for r in rows) if rows else 0.0,
        "contains": statistics.fmean(r["contains"] for r in rows) if rows else 0.0,
        "n": len(rows),
        "served_versions": sorted(served),
        "rows": rows,
    }


# -- the whole evaluation -------------------------------------------------------------
def evaluate(
    recipe: EvaluateRecipe,
    *,
    recipe_path: str | Path | None = None,
    progress: ProgressFactory = _no_progress,
) -> dict[str, Any]:
    """Score ``recipe.model``; log to MLflow and tag the registry version. Returns the summary."""
    from lathe.settings import load_settings

    settings = load_settings()
    uri = tracking_uri()
    registry = ModelRegistry(uri) if recipe.is_registered or recipe.mlflow.enabled else None
    if registry is not None:
        registry.ping()
    version = preflight(recipe, registry)
    summary: dict[str, Any] = {
        "name": recipe.name,
        "model": recipe.model,
        "model_name": version.name if version else None,
        "model_version": version.version if version else None,
    }
    metrics: dict[str, float] = {}

    folder = None  # the weights: perplexity reads them; lm-eval over completions needs the tokenizer
    if recipe.perplexity.enabled or (recipe.lm_eval.enabled and recipe.lm_eval.api == "completions"):
        folder = _model_folder(recipe, version, registry, settings.home / "models")
        summary["model_path"] = str(folder)
    if recipe.perplexity.enabled:
        value, tokens, documents = _perplexity(recipe, folder, progress)
        summary.update(perplexity=value, perplexity_tokens=tokens, documents=documents)
        metrics.update(eval_perplexity=value, eval_perplexity_tokens=tokens, eval_documents=documents)

    endpoints = functools.partial(
        open_endpoint, home=settings.home.resolve(), tracking_uri=uri,
        gateway_url=settings.gateway.base_url, key_file=settings.gateway_dir / "cli_key",
    )  # fmt: skip
    holder = champion_of(recipe, registry, version) if recipe.judge.enabled and registry and version else None
    prompts = load_prompts(recipe.judge.prompts or "", recipe.judge.max_prompts) if holder else []
    asked = _ask_the_candidate(recipe, version, endpoints, prompts, folder, progress, summary, metrics)
    judged: list[dict] = []
    if holder and version is not None:
        verdicts, judged = run_judge(recipe, version, holder, prompts, asked.pop("answers"), endpoints, progress)
        summary["judge"] = verdicts
        metrics.update(judge_metrics(verdicts))

    summary["metrics"] = metrics
    summary["mlflow_run_id"] = summary["mlflow_url"] = None
    if recipe.mlflow.enabled and registry is not None:
        tables = {**{k: v for k, v in asked.items() if k != "answers"}, "eval/pairwise.json": judged}
        run = log_run(recipe, recipe_path, summary, metrics, tables, uri)
        summary["mlflow_run_id"], summary["mlflow_url"] = run.run_id, run_url(uri, run.experiment_id, run.run_id)
        if version is not None:
            for key, value in metrics.items():
                registry.set_version_tag(version.name, version.version, eval_tag(key), _tag_value(value))
            registry.set_version_tag(version.name, version.version, EVAL_RUN_TAG, summary["mlflow_run_id"])
    return summary


def _ask_the_candidate(recipe, version, endpoints, prompts, folder, progress, summary, metrics) -> dict[str, list]:
    """Everything asked of the candidate through one endpoint (its own server with ``serve``):
    the task, the knowledge and safety suites, lm-eval's tasks and the judge's prompts.
    Returns the rows per MLflow table, and the judge prompts' answers under ``answers``."""
    sections = ((_task, recipe.task), (_knowledge, recipe.knowledge), (_safety, recipe.safety),
                (_lm_eval, recipe.lm_eval))  # fmt: skip
    parts = [part for part, section in sections if section.enabled]
    out: dict[str, list] = {"answers": []}
    if not (parts or prompts):
        return out
    name, number = (version.name, version.version) if version else ("", None)
    with contextlib.ExitStack() as stack:
        endpoint = endpoints(stack, recipe.task.endpoint, name, number, field="task.endpoint")
        for part in parts:
            out.update(part(endpoint, recipe, folder, progress, summary, metrics))
        if prompts:
            on_done = progress("candidate answers", len(prompts))
            out["answers"], _ = answer_all(endpoint, prompts, recipe.judge.max_tokens, recipe.task.system,
                                           recipe.judge.concurrency, on_done)  # fmt: skip
    return out


def _task(endpoint, recipe, folder, progress, summary, metrics) -> dict[str, list]:
    scored = _score(endpoint, recipe.task.questions or "", recipe.task, "task.questions", "questions", progress)
    summary.update(
        exact_match=scored["exact_match"], token_f1=scored["token_f1"], questions=scored["n"],
        endpoint=endpoint.base_url, endpoint_model=endpoint.model, served_versions=scored["served_versions"],
    )  # fmt: skip
    metrics.update(eval_exact_match=scored["exact_match"], eval_token_f1=scored["token_f1"], eval_questions=scored["n"])
    return {"eval/questions.json": scored["rows"]}


def _knowledge(endpoint, recipe, folder, progress, summary, metrics) -> dict[str, list]:
    section = recipe.knowledge
    known = _score(endpoint, section.path, section, "knowledge.questions", "knowledge questions", progress)
    summary.update(knowledge_accuracy=known["contains"], knowledge_questions=known["n"])
    metrics.update(eval_knowledge_accuracy=known["contains"], eval_knowledge_questions=known["n"])
    return {"eval/knowledge.json": known["rows"]}


def _safety(endpoint, recipe, folder, progress, summary, metrics) -> dict[str, list]:
    section = recipe.safety
    items = first_of_each(load_suite(section.path), section.max_items)
    on_done = progress("safety prompts", len(items))
    rows, rates = run_suite(endpoint, items, section.max_tokens, section.system, section.concurrency, on_done)
    summary["safety"] = rates
    metrics.update(safety_metrics(rows, rates))
    return {"eval/safety.json": rows}


def _lm_eval(endpoint, recipe, folder, progress, summary, metrics) -> dict[str, list]:
    print(f"lm-eval: {', '.join(recipe.lm_eval.tasks)} through {endpoint.base_url} ({recipe.lm_eval.api})", flush=True)
    figures, results, rows = run_lm_eval(recipe.lm_eval, endpoint, folder)
    summary["lm_eval"] = {"results": results["results"], "version": results["lm_eval_version"]}
    metrics.update(figures)
    return {f"eval/lm_eval/{task}.json": task_rows for task, task_rows in rows.items()}


def _score(endpoint, path: str, section, field: str, label: str, progress: ProgressFactory) -> dict[str, Any]:
    questions = load_questions(path, section.max_questions, field)
    return score_task(
        endpoint.base_url, endpoint.model, endpoint.api_key, questions, section.max_tokens,
        system=section.system, on_question=progress(label, len(questions)), concurrency=section.concurrency,
    )  # fmt: skip


def _model_folder(
    recipe: EvaluateRecipe, version: ModelVersionInfo | None, registry: ModelRegistry | None, cache: Path
) -> Path:
    if version is None or registry is None:
        return Path(recipe.model)
    return registry.download(version.name, version.version, cache)


def _perplexity(recipe: EvaluateRecipe, folder: Path, progress: ProgressFactory) -> tuple[float, int, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model: {folder} has no usable tokenizer ({type(exc).__name__})", param="model") from None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    docs = load_texts(recipe.perplexity.texts or "", recipe.perplexity.max_documents)
    texts = [_render(doc, tokenizer) for doc in docs]
    value, tokens = perplexity(model, tokenizer, texts, recipe.perplexity.seq_len, progress("documents", len(texts)))
    if tokens == 0:
        raise ConfigError(
            f"perplexity.texts: no document in {recipe.perplexity.texts} has two tokens to score",
            param="perplexity.texts",
        )
    return value, tokens, len(texts)


def _render(doc: str | list[dict], tokenizer: Any) -> str:
    if isinstance(doc, str):
        return doc
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(doc, tokenize=False)
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in doc)


def _tag_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
