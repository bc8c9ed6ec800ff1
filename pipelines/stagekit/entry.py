"""The one command line of every pipeline stage.

    python -m pipelines.<stage> --config RECIPE [--set training.max_steps=20 ...] [--json] [--check]
                                [--ray-address ADDR] [the stage's shortcuts: --input, --output, --model]

A stage is a ``Stage``: its recipe model, a pre-flight (``prepare``) and the work
(``run``), which returns a ``StageResult``. ``--check`` runs the pre-flight (recipe,
data, models, batch sizes, memory) and stops before any work starts. A ``LatheError``
becomes one line on stderr, ``<stage>: <field>: <message>``, and the exit code of its
kind (2 for configuration). A finished stage prints its summary (a table, or JSON with
``--json``) and then its ``LATHE_RESULT`` line on stderr, which ``lathe train submit``
and ``lathe data curate`` read back; under ``LATHE_RESULT_ONLY=1`` only that line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lathe.jobs import StageResult
from pipelines.stagekit.settings import PipelineSettings


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


@dataclass(frozen=True)
class Shortcut:
    """A flag that sets one recipe field (``--output DIR`` is ``--set output=DIR``)."""

    flag: str
    field: str
    help: str


@dataclass
class StageContext:
    """What the command line and the environment tell a stage besides its recipe."""

    args: argparse.Namespace
    settings: PipelineSettings
    recipe_path: Path
    _tracking_uri: str | None = None

    @property
    def check(self) -> bool:
        return bool(self.args.check)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    @property
    def ray_address(self) -> str | None:
        return getattr(self.args, "ray_address", None) or self.settings.ray_address

    def tracking_uri(self, recipe: Any) -> str | None:
        """The MLflow server when the recipe logs to MLflow (checked reachable once), else None."""
        if not recipe.mlflow.enabled:
            return None
        if self._tracking_uri is None:
            from lathe.registry import ModelRegistry

            uri = self.settings.tracking_uri()
            ModelRegistry(uri).ping()  # before any work starts, not after it
            self._tracking_uri = uri
        return self._tracking_uri


@dataclass
class StageOutcome:
    result: StageResult
    # The stage's full summary, which --json prints (default: the result itself).
    details: dict[str, Any] | None = None


@dataclass
class Stage:
    """One pipeline stage as its command line sees it."""

    name: str  # errors start "<name>: "; the module is pipelines.<package>
    doc: str  # the module docstring: its first line is the --help description
    recipe_model: type
    # (recipe, context) -> (what run needs, a note for "recipe R is valid<note>")
    prepare: Callable[[Any, StageContext], tuple[Any, str]]
    # (what prepare returned, context) -> the outcome
    run: Callable[[Any, StageContext], StageOutcome]
    show: Callable[[StageOutcome], None]  # the human summary
    shortcuts: tuple[Shortcut, ...] = ()
    uses_ray: bool = True
    package: str | None = None  # pipelines.<package> when it differs from name


def parser_for(stage: Stage) -> argparse.ArgumentParser:
    module = f"pipelines.{stage.package or stage.name}"
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=stage.doc.strip().splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe (YAML)")
    for shortcut in stage.shortcuts:
        parser.add_argument(shortcut.flag, help=shortcut.help)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a recipe field")
    if stage.uses_ray:
        parser.add_argument("--ray-address", help="Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check", action="store_true", help="run the pre-flight checks, then stop")
    return parser


def stage_main(stage: Stage, argv: list[str] | None = None) -> int:
    """Parse, load the recipe, pre-flight, run, report: the ``main`` of every stage."""
    args = parser_for(stage).parse_args(argv)

    from lathe.errors import LatheError
    from pipelines.stagekit.recipes import load_recipe
    from pipelines.stagekit.settings import load_pipeline_settings

    try:
        settings = load_pipeline_settings()
        overrides = parse_sets(args.set)
        for shortcut in stage.shortcuts:
            value = getattr(args, shortcut.flag.lstrip("-").replace("-", "_"))
            if value is not None:
                overrides[shortcut.field] = value
        recipe = load_recipe(stage.recipe_model, args.config, overrides)
        context = StageContext(args=args, settings=settings, recipe_path=Path(args.config).resolve())
        # With --json, stdout holds the JSON alone: what the stage says on the way goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            work, note = stage.prepare(recipe, context)
            if not args.check:
                outcome = stage.run(work, context)
        if args.check:
            print(f"recipe {args.config} is valid{note}")
            return 0
    except LatheError as exc:
        print(f"{stage.name}: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    report(stage, outcome, json_output=args.json, result_only=settings.result_only)
    return 0


def report(stage: Stage, outcome: StageOutcome, *, json_output: bool, result_only: bool) -> None:
    """The summary (unless the CLI draws it from the result line), then the result line."""
    if not result_only:
        if json_output:
            details = outcome.details if outcome.details is not None else outcome.result.model_dump(mode="json")
            print(json.dumps(details, indent=2, default=str))
        else:
            stage.show(outcome)
    # On stderr, so that --json keeps stdout pure JSON; a Ray job's log holds both.
    print(outcome.result.line(), file=sys.stderr, flush=True)


def show_result_table(outcome: StageOutcome) -> None:
    """The summary of a stage that trains something: steps, time, metrics, run, model."""
    from rich.console import Console
    from rich.table import Table

    result = outcome.result
    console = Console()
    table = Table(title=f"{result.stage} — {result.name}", title_justify="left")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("steps", str(result.steps))
    table.add_row("time", f"{result.seconds or 0:.0f} s")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4g}")
    console.print(table)
    if result.run_id:
        console.print(f"MLflow run: {result.run_id}")
    if result.model_version:
        console.print(f"registered: {result.model_name} version {result.model_version}")
    console.print(f"model folder: {result.model_path}")
