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

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe (YAML)")
    parser.add_argument("--model", help="override model (models:/NAME/VERSION, models:/NAME@ALIAS or a folder)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a recipe field")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check", action="store_true", help="validate the recipe, its files and the model, then stop")
    args = parser.parse_args(argv)

    from lathe.errors import LatheError

    try:
        from pipelines.stagekit.settings import load_pipeline_settings

        settings = load_pipeline_settings()
        from pipelines.evaluate.config import EvaluateRecipe, preflight
        from pipelines.evaluate.harness import evaluate, tracking_uri
        from pipelines.stagekit.cli import parse_sets
        from pipelines.stagekit.recipes import load_recipe

        overrides = parse_sets(args.set)
        if args.model:
            overrides["model"] = args.model
        recipe = load_recipe(EvaluateRecipe, args.config, overrides)
        if args.check:
            from lathe.registry import ModelRegistry

            registry = ModelRegistry(tracking_uri()) if recipe.is_registered or recipe.mlflow.enabled else None
            if registry is not None:
                registry.ping()
            version = preflight(recipe, registry)
            scored = f" ({version.name} v{version.version})" if version else ""
            print(f"recipe {args.config} is valid{scored}")
            return 0
        if args.json:
            summary = evaluate(recipe, recipe_path=args.config)
        else:
            with _progress() as factory:
                summary = evaluate(recipe, recipe_path=args.config, progress=factory)
    except LatheError as exc:
        print(f"evaluate: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    # Under `lathe train submit` (LATHE_RESULT_ONLY=1) the CLI draws the summary from the result line.
    if not settings.result_only:
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            _print_summary(summary)
    _print_result_line(summary)
    return 0


def _print_result_line(summary: dict[str, Any]) -> None:
    """The line `lathe train submit` reads back from a Ray job's log."""
    from lathe.jobs import RESULT_PREFIX

    result = {
        "stage": "evaluate",
        "name": summary["name"],
        "status": "FINISHED",
        "run_id": summary.get("mlflow_run_id"),
        "model_name": summary.get("model_name"),
        "model_version": summary.get("model_version"),
        "model_path": summary.get("model_path"),
        "steps": 0,
        "metrics": summary.get("metrics", {}),
    }
    print(RESULT_PREFIX + json.dumps(result, default=str), file=sys.stderr, flush=True)


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


if __name__ == "__main__":
    sys.exit(main())
