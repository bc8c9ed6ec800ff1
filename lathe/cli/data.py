"""``lathe data curate``: run the curation pipeline as a Ray job."""

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
    config: Path = typer.Option(..., "--config", "-c", help="The curation recipe (YAML).", exists=True, dir_okay=False),
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
    import yaml

    from lathe.errors import ConfigError
    from lathe.jobs import submit_and_follow

    s = settings()
    try:
        recipe = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {config} is not valid YAML: {exc}") from None
    out_dir = Path(output or recipe.get("output") or "").expanduser().resolve()
    argv = [sys.executable, "-m", "pipelines.curation", "--config", str(config.resolve())]
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
    if local:
        result = subprocess.run(argv, env={**os.environ, **env}, check=False)
        if result.returncode != 0:
            raise typer.Exit(result.returncode)
    else:
        outcome = submit_and_follow(
            s, argv, address=address, env=env, on_line=lambda line: show.print(line, highlight=False, markup=False)
        )
        show.print(f"Ray job {outcome.job_id} {outcome.status} in {outcome.seconds:.0f}s")
    summary = json.loads((out_dir / "summary.json").read_text())
    if json_output:
        print_json(summary)
