"""``lathe up``, ``lathe down``, ``lathe status``: the local platform."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lathe.cli.output import console, err_console, print_json, settings

_STATE_STYLE = {"healthy": "green", "unhealthy": "red", "stopped": "yellow", "unavailable": "dim"}


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)


def up(
    candidate: str | None = typer.Option(
        None, "--candidate", help="Also run a candidate inference service pinned to this version (for a rollout)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the final status as JSON instead of a table."),
) -> None:
    """Start the local platform: MLflow, a Ray head, the inference service (vLLM) and Prometheus.

    Components already running are left alone, so `up` twice is harmless. On a first run
    the bundled SmolLM2 model is registered as version 1 with the alias `champion`. If a
    step fails, what this call started is stopped again.
    """
    from lathe.platform.local import LocalPlatform

    platform = LocalPlatform(settings())
    # With --json, stdout carries the JSON document alone; progress goes to stderr.
    out = err_console if json_output else console
    with out.status("starting the local platform…") as spinner:
        statuses = platform.up(progress=lambda msg: _progress(spinner, msg, out))
        if candidate is not None:
            platform.start_candidate(candidate, progress=lambda msg: _progress(spinner, msg, out))
            statuses = platform.status()
    if json_output:
        print_json(_status_json(platform, statuses))
    else:
        console.print(status_table(statuses))
        console.print(f"Home: {platform.settings.home}   Stop with: [bold]lathe down[/]")


def down() -> None:
    """Stop exactly the processes `lathe up` started (state files under .lathe/run)."""
    from lathe.platform.local import LocalPlatform

    platform = LocalPlatform(settings())
    with console.status("stopping…") as spinner:
        stopped = platform.down(progress=lambda msg: _progress(spinner, msg))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status(
    json_output: bool = typer.Option(False, "--json", help="Every component's URL, port, PID, health and log as JSON."),
) -> None:
    """Show what runs where: URLs, ports, PIDs, health and log files. Exits 1 if a started component is unhealthy."""
    from lathe.platform.local import LocalPlatform

    platform = LocalPlatform(settings())
    statuses = platform.status()
    if json_output:
        print_json(_status_json(platform, statuses))
    else:
        console.print(status_table(statuses))
    if any(s.state in ("unhealthy",) or (s.state == "stopped" and s.pid) for s in statuses):
        raise typer.Exit(1)


def _short(path: str | None) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _progress(spinner, message: str, out=console) -> None:
    spinner.update(message)
    if not message.endswith("s)"):  # keep milestones on screen, not every poll
        out.print(f"  {message}", highlight=False)


def _status_json(platform, statuses) -> dict:
    return {
        "home": str(platform.settings.home),
        "profile": platform.settings.profile,
        "healthy": all(s.healthy for s in statuses if s.state != "unavailable"),
        "components": [s.to_dict() for s in statuses],
    }


def status_table(statuses) -> Table:
    table = Table(title="Lathe — local platform", title_justify="left")
    for column in ("component", "state", "url", "pid", "detail", "log"):
        table.add_column(column, overflow="fold", no_wrap=column in ("url", "pid", "state"))
    for s in statuses:
        style = _STATE_STYLE.get(s.state, "")
        table.add_row(s.name, f"[{style}]{s.state}[/]", s.url or "", str(s.pid or ""), s.detail, _short(s.log))
    return table
