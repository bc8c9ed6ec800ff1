"""Score a model: ``python -m pipelines.evaluate --config pipelines/recipes/evaluate.yaml``.

The same command runs on a laptop and as a Ray job (``ray job submit -- python -m
pipelines.evaluate --config …``). ``--model`` overrides the recipe's model
(``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a folder). It ends with a summary
table and, unless ``mlflow.enabled: false``, an MLflow run plus ``lathe.eval.*`` tags on
the registry version, which ``lathe models promote --if-better-than`` compares.
``--json`` prints the summary as JSON; ``--check`` validates the recipe, its files and
the model reference, then stops.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def prepare(recipe, context) -> tuple[Any, str]:
    """--check: the recipe's files and the model reference (a run does the same checks itself)."""
    if not context.check:
        return recipe, ""
    from lathe.registry import ModelRegistry
    from pipelines.evaluate.config import preflight
    from pipelines.evaluate.harness import tracking_uri

    registry = ModelRegistry(tracking_uri()) if recipe.is_registered or recipe.mlflow.enabled else None
    if registry is not None:
        registry.ping()
    version = preflight(recipe, registry)
    return recipe, f" ({version.name} v{version.version})" if version else ""


def run(recipe, context):
    from lathe.jobs import StageResult
    from pipelines.evaluate.harness import evaluate
    from pipelines.stagekit.entry import StageOutcome

    started = time.monotonic()
    if context.json:
        summary = evaluate(recipe, recipe_path=context.args.config)
    else:
        with _progress() as factory:
            summary = evaluate(recipe, recipe_path=context.args.config, progress=factory)
    result = StageResult(
        stage="evaluate",
        name=summary["name"],
        run_id=summary.get("mlflow_run_id"),
        mlflow_url=summary.get("mlflow_url"),
        model_name=summary.get("model_name"),
        model_version=summary.get("model_version"),
        model_path=summary.get("model_path"),
        seconds=round(time.monotonic() - started, 1),
        metrics=summary.get("metrics", {}),
    )
    return StageOutcome(result, details=summary)


def main(argv: list[str] | None = None) -> int:
    from pipelines.evaluate.config import EvaluateRecipe
    from pipelines.stagekit.entry import Shortcut, Stage, stage_main

    model = Shortcut("--model", "model", "override model (models:/NAME/VERSION, models:/NAME@ALIAS or a folder)")
    stage = Stage("evaluate", __doc__, EvaluateRecipe, prepare, run, lambda outcome: _print_summary(outcome.details),
                  (model,), uses_ray=False)  # fmt: skip
    return stage_main(stage, argv)


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """Rich progress bars on stderr, one per stage (documents, questions)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )

    def factory(label: str, total: int) -> Callable[[], None]:
        task = bars.add_task(label, total=total)
        return lambda: bars.advance(task)

    with bars:
        yield factory


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    scored = summary["model"]
    if summary.get("model_version"):
        scored = f"{summary['model_name']} v{summary['model_version']} ({summary['model']})"
    table = Table(title=f"Evaluation of {scored}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("on")
    if "perplexity" in summary:
        table.add_row(
            "perplexity",
            f"{summary['perplexity']:.3f}",
            f"{summary['perplexity_tokens']} tokens, {summary['documents']} documents",
        )
    if "token_f1" in summary:
        on = f"{summary['questions']} questions via {summary['endpoint']} ({summary['endpoint_model']})"
        table.add_row("exact match", f"{summary['exact_match']:.3f}", on)
        table.add_row("token F1", f"{summary['token_f1']:.3f}", on)
    for row in _suite_rows(summary):
        table.add_row(*row)
    console.print(table)
    served = [v for v in summary.get("served_versions", []) if v.isdigit()]
    if summary.get("model_version") and served and summary["model_version"] not in served:
        console.print(
            f"[yellow]warning:[/] the endpoint answered with version(s) {', '.join(served)}, not "
            f"v{summary['model_version']}: the task score is of the served model; point task.endpoint at a "
            "server of this version"
        )
    if summary.get("mlflow_run_id"):
        console.print(f"MLflow run: {summary['mlflow_run_id']}")
        if summary.get("model_version"):
            console.print(f"tagged {summary['model_name']} v{summary['model_version']} with lathe.eval.*")


def _suite_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The knowledge and safety suites, lm-eval's tasks and the judge, one row per figure."""
    rows = []
    if "knowledge_accuracy" in summary:
        rows.append(("knowledge kept", f"{summary['knowledge_accuracy']:.3f}",
                     f"{summary['knowledge_questions']} general questions (no-forgetting suite)"))  # fmt: skip
    for category, rate in summary.get("safety", {}).items():
        rows.append((f"safety: {category}", f"{rate:.3f}", "share of the suite's items passed"))
    for key, value in summary.get("metrics", {}).items():
        if key.startswith("eval_lmeval_"):
            rows.append((key.removeprefix("eval_lmeval_"), f"{value:.3f}", "lm-eval"))
    if "judge" in summary:
        j = summary["judge"]
        verdict = "conclusive" if j["conclusive"] else "inconclusive: the interval holds 50 %"
        rows.append(("judge win rate", f"{j['win_rate']:.3f}",
                     f"[{j['low']:.2f}, {j['high']:.2f}] over {j['prompts']} prompts vs v{j['champion_version']}; "
                     f"{verdict}; position consistency {j['position_consistency']:.2f}"))  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
