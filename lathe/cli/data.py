"""``lathe data curate``: run the curation pipeline as a Ray job.

lathe data curate --input PATH --output DIR       # the shipped pipelines/recipes/curation.yaml
lathe data curate --config my-curation.yaml [--input PATH] [--output DIR] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from lathe.cli.output import console, err_console, print_json, settings

app = typer.Typer(help="Curate training data with Ray jobs.", no_args_is_help=True)


@app.command("curate")
def curate(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="The curation recipe (YAML); default: the shipped pipelines/recipes/curation.yaml.",
        exists=True,
        dir_okay=False,
    ),
    input_path: str | None = typer.Option(None, "--input", help="Override the recipe's input.path."),
    output: str | None = typer.Option(None, "--output", help="Override the recipe's output folder."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API (default: the local head)."),
    local: bool = typer.Option(False, "--local", help="Run in this machine's own Ray, not as a Ray job."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Normalise, filter, redact, deduplicate and decontaminate a corpus; write Parquet and a report.

    By default the job goes to the Ray head of `lathe up` through the Ray Jobs API (the
    same way it goes to a KubeRay cluster with --address), with its logs streamed here.
    """
    from lathe.errors import ConfigError, PlatformError
    from lathe.jobs import StageResult, submit_and_follow
    from lathe.recipes import ENTRY_POINTS, read_recipe

    s = settings()
    config = config or default_recipe()
    recipe = read_recipe(config)
    out_dir = Path(output or recipe.get("output") or "").expanduser().resolve()
    argv = [sys.executable, "-m", ENTRY_POINTS["curation"], "--config", str(config.resolve())]
    if input_path:
        argv += ["--input", str(Path(input_path).expanduser().resolve())]
    argv += ["--output", str(out_dir)]
    env = {"MLFLOW_TRACKING_URI": s.mlflow.uri, "LATHE_HOME": str(s.home)}
    show = err_console if json_output else console
    # Check the recipe here, in seconds, before a job is queued.
    check = subprocess.run([*argv, "--check"], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if check.returncode != 0:
        message = (check.stderr.strip().splitlines() or ["the recipe check failed"])[-1]
        raise ConfigError(message.removeprefix("curation: "))
    found: list[StageResult] = []

    def line(text: str) -> None:
        result = StageResult.from_line(text)
        if result is not None:
            found.append(result)
        else:
            show.print(text, highlight=False, markup=False)

    if local:
        code = _run_here(argv, {**os.environ, **env}, line)
        if code != 0:
            raise typer.Exit(code)
    else:
        outcome = submit_and_follow(s, argv, address=address, env=env, on_line=line)
        show.print(f"Ray job {outcome.job_id} {outcome.status} in {outcome.seconds:.0f}s")
    if not found:
        raise PlatformError("the curation job ended without a result line")
    summary = json.loads((Path(found[-1].output or out_dir) / "summary.json").read_text())
    if json_output:
        print_json(summary)


def default_recipe() -> Path:
    """The shipped curation recipe; --input and --output point it at any corpus."""
    from lathe.errors import ConfigError
    from lathe.recipes import shipped_recipe

    path = shipped_recipe("curation.yaml")
    if not path.is_file():
        raise ConfigError(
            "--config: no recipe given and the shipped pipelines/recipes/curation.yaml is not here; "
            "pass --config RECIPE or run from Lathe's folder",
            param="config",
        )
    return path


def _run_here(argv: list[str], env: dict[str, str], on_line) -> int:
    """Run the stage in this machine's own Ray, its output line by line through ``on_line``."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for text in process.stdout:
        on_line(text.rstrip("\n"))
    return process.wait()
