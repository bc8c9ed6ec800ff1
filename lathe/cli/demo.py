"""``lathe demo``: the platform's whole life in one command, ending with a summary table."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from lathe.cli.output import console, err_console, print_json, settings
from lathe.demo.stage_lines import MARKS, STYLES, clock, shown_path


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    size: str = typer.Option("full", "--size", help="full (≤ 12 min on 2 cores) or ci (a few minutes)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON (progress goes to stderr)."),
    install_seconds: float | None = typer.Option(
        None, "--install-seconds", hidden=True, help="Time `make demo` spent installing, reported apart."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Pass each stage's own output through to the terminal (it is in its log either way)."
    ),
) -> None:
    """Curate → tokenizer → pre-train → SFT → DPO → evaluate → gate → hot swap → chat → RAG → agent → monitoring.

    Every stage is a `lathe` command of its own and shows one line: live
    while it runs, then its time and key figure. What its commands print
    goes to <home>/logs/demo/<stage>.log (its end is shown if it fails).
    The summary is also written to <home>/demo/summary.json. Exits 1 when
    a stage fails (the gate keeping the champion is not a failure).
    """
    from lathe.demo.runner import SIZES, DemoLoop, write_summary
    from lathe.demo.stages import STAGES
    from lathe.errors import ConfigError

    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)} (got {size!r})", param="size")
    s = settings()
    loop = DemoLoop(s, SIZES[size], err_console if json_output else console, verbose=verbose)
    started = time.monotonic()
    ok = loop.run(STAGES)
    summary = loop.summary(time.monotonic() - started, install_seconds)
    path = write_summary(summary, s.home)
    if json_output:
        print_json(summary)
    else:
        console.print(summary_table(summary))
        for name, url in summary["urls"].items():
            console.print(f"  {name:<22} {url}", highlight=False)
        console.print(f"stage logs: {shown_path(loop.log_dir)}/", highlight=False)
        console.print(f"summary: {path}", highlight=False)
    if not ok:
        raise typer.Exit(1)


def summary_table(summary: dict) -> Table:
    total = summary["total_seconds"]
    budget = " (budget 12:00)" if summary["size"]["name"] == "full" else ""
    installs = summary.get("install_seconds")
    caption = f"total {clock(total)}{budget}" + (f"; installs before it {clock(installs)}" if installs else "")
    table = Table(title="Lathe demo — the whole loop", title_justify="left", caption=caption, caption_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("result", overflow="fold")
    table.add_column("MLflow exp/run", no_wrap=True)
    for stage in summary["stages"]:
        status = stage["status"]
        table.add_row(
            f"[{STYLES[status]}]{MARKS[status]}[/] {stage['name']}",
            clock(stage["seconds"]),
            stage["figure"],
            _run_link(stage.get("run_url")),
        )
    return table


def _run_link(url: str | None) -> str:
    """The run's short id, a link in terminals that follow them; the whole URL is in summary.json."""
    if not url:
        return ""
    experiment, run = url.rsplit("/experiments/", 1)[1].split("/runs/")
    return f"[link={url}]{experiment}/{run[:8]}[/link]"
