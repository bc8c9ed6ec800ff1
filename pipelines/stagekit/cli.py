"""The command line every training stage shares.

    python -m pipelines.<stage> --config RECIPE [--set training.max_steps=20 ...]
                                [--ray-address ADDR] [--json] [--check]

``--check`` runs every pre-flight check (recipe, data, base model, batch sizes, memory)
and stops before any worker starts. A ``LatheError`` becomes one line on stderr naming
the field, and the exit code of its kind (2 for configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    import yaml

    from lathe.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected FIELD=VALUE, e.g. training.max_steps=20")
        out[key.strip()] = yaml.safe_load(value)
    return out


def tracking_uri_for(recipe: Any) -> str | None:
    """The MLflow server (``MLFLOW_TRACKING_URI`` or Lathe's settings), checked reachable."""
    if not recipe.mlflow.enabled:
        return None
    from lathe.registry import ModelRegistry
    from pipelines.stagekit.settings import load_pipeline_settings

    uri = load_pipeline_settings().tracking_uri()
    ModelRegistry(uri).ping()  # before any worker starts, not after the work
    return uri


def run_main(
    parser: argparse.ArgumentParser, argv: list[str] | None, recipe_model: type, prepare: Callable[..., Any]
) -> int:
    parser.add_argument("--config", required=True, help="the recipe (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a recipe field")
    parser.add_argument("--ray-address", help="Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check", action="store_true", help="run the pre-flight checks, then stop")
    args = parser.parse_args(argv)
    stage = parser.prog.rsplit(".", 1)[-1]

    from lathe.errors import LatheError
    from pipelines.stagekit.settings import load_pipeline_settings

    try:
        settings = load_pipeline_settings()
        from pipelines.stagekit.recipes import load_recipe

        recipe = load_recipe(recipe_model, args.config, parse_sets(args.set))
        tracking_uri = tracking_uri_for(recipe)
        run = prepare(recipe, Path(args.config).resolve())
        if args.check:
            print(f"recipe {args.config} is valid; {recipe.global_batch} rows per step, ready to train")
            return 0
        from pipelines.stagekit.train_runner import print_summary, run_stage

        summary = run_stage(
            run, tracking_uri=tracking_uri, ray_address=args.ray_address or settings.ray_address, settings=settings
        )
    except LatheError as exc:
        print(f"{stage}: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print_summary(summary, args.json, settings.result_only)
    return 0
