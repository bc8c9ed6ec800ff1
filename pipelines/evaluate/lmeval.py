"""Standard harnesses through the OpenAI API: EleutherAI's lm-evaluation-harness (PyPI ``lm-eval``).

    metrics, results, samples = run_lm_eval(recipe.lm_eval, endpoint, tokenizer_folder)

The served version is evaluated as clients reach it, through an OpenAI-compatible
endpoint: ``api: chat`` (``local-chat-completions``, generation tasks, the model's chat
template applied by the server) or ``api: completions`` (``local-completions``, which also
runs log-likelihood tasks; it sends token ids, so it needs an engine that takes them and
returns prompt logprobs: the inference service or vLLM itself, not the gateway, which
takes text prompts only). Tasks are names found in Lathe's task folder (``tasks/`` here:
``lathe_knowledge``, ``lathe_docs_mc``, ``lathe_docs_mc_gen``, read from the suites shipped
beside them, no hub), in ``include_path``, or among lm-eval's own tasks where their
datasets can be downloaded (MMLU, GSM8K, HellaSwag, TruthfulQA, IFEval).

Each task's metrics become ``eval_lmeval_<task>_<metric>`` (``lathe.eval.lmeval_…`` on the
version, for a gate policy); the full results and every sample go to the MLflow run.
"""

from __future__ import annotations

import logging
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError
from pipelines.evaluate.chat import Endpoint

TASKS = Path(__file__).resolve().parent / "tasks"


def task_manager(include_path: str | None, tasks: list[str] = ()) -> Any:
    """lm-eval's task index: Lathe's folder and ``include_path`` alone when they hold every task
    named (3 ms), else with lm-eval's own ~14,700 tasks too (about 14 s on one core)."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS), *([include_path] if include_path else [])]
    ours = TaskManager(include_path=paths, include_defaults=False)
    if tasks and all(t in ours.all_tasks or Path(t).is_file() for t in tasks):
        return ours
    return TaskManager(include_path=paths)


def check_tasks(section: Any) -> None:
    """Every task named exists, before any model loads."""
    manager = task_manager(section.include_path, list(section.tasks))
    known = set(manager.all_tasks)
    unknown = [t for t in section.tasks if t not in known and not Path(t).is_file()]
    if unknown:
        ours = ", ".join(sorted(t for t in known if t.startswith("lathe_")))
        raise ConfigError(
            f"lm_eval.tasks: no task {', '.join(unknown)} (Lathe's: {ours}; or lm-eval's own, or a .yaml path)",
            param="lm_eval.tasks",
        )


def model_args(section: Any, endpoint: Endpoint, tokenizer_folder: Path | None) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "model": endpoint.model,
        "num_concurrent": section.num_concurrent,
        "max_retries": 2,
        "max_gen_toks": section.max_gen_toks,
        "header": {"Authorization": f"Bearer {endpoint.api_key or 'none'}"},
    }
    if section.api == "chat":
        return "local-chat-completions", {**args, "base_url": f"{endpoint.base_url}/chat/completions",
                                          "tokenized_requests": False}  # fmt: skip
    if tokenizer_folder is None:
        raise ConfigError("lm_eval.api: completions needs the model's tokenizer: a registered model or a folder",
                          param="lm_eval.api")  # fmt: skip
    return "local-completions", {**args, "base_url": f"{endpoint.base_url}/completions",
                                 "tokenizer_backend": "huggingface", "tokenizer": str(tokenizer_folder)}  # fmt: skip


def run_lm_eval(
    section: Any, endpoint: Endpoint, tokenizer_folder: Path | None = None
) -> tuple[dict[str, float], dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The metrics, lm-eval's results (without samples) and, per task, one row per sample."""
    import lm_eval

    logging.getLogger("lm_eval").setLevel(logging.WARNING)  # its per-request lines stay out of the progress
    model, args = model_args(section, endpoint, tokenizer_folder)
    results = lm_eval.simple_evaluate(
        model=model, model_args=args, tasks=list(section.tasks), num_fewshot=section.num_fewshot,
        limit=section.limit, task_manager=task_manager(section.include_path, list(section.tasks)), log_samples=True,
        apply_chat_template=section.api == "chat", bootstrap_iters=0, random_seed=0,
    )  # fmt: skip
    if results is None:
        raise ConfigError("lm_eval: the harness returned no results", param="lm_eval.tasks")
    samples = results.pop("samples", {})
    metrics: dict[str, float] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for task, figures in results["results"].items():
        names = set()
        for key, value in figures.items():
            name = key.split(",")[0]
            if isinstance(value, int | float) and not isinstance(value, bool) and not name.endswith("_stderr"):
                metrics[f"eval_lmeval_{task}_{name}"] = float(value)
                names.add(name)
        rows[task] = [_sample_row(s, names) for s in samples.get(task, [])]
    results["lm_eval_version"] = package_version("lm-eval")
    return metrics, results, rows


def _sample_row(sample: dict[str, Any], metrics: set[str]) -> dict[str, Any]:
    response = (sample.get("filtered_resps") or sample.get("resps") or [""])[0]
    row = {"doc_id": sample.get("doc_id"), "target": str(sample.get("target")), "response": str(response)[:2000]}
    row.update({m: float(sample[m]) for m in sorted(metrics) if isinstance(sample.get(m), int | float)})
    return row
