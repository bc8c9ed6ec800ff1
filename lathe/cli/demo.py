"""``lathe demo``: the platform's whole life in one command, ending with a summary table."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from lathe.cli.output import console, err_console, print_json, settings


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    size: str = typer.Option("full", "--size", help="full (≤ 15 min on 2 cores) or ci (a few minutes)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON (progress goes to stderr)."),
    install_seconds: float | None = typer.Option(
        None, "--install-seconds", hidden=True, help="Time `make demo` spent installing, reported apart."
    ),
) -> None:
    """Curate → tokenizer → pre-train → SFT → DPO → evaluate → gate → hot swap → chat → RAG → agent → monitoring.

    Every stage is a `lathe` command of its own (shown as it starts); the summary is also
    written to <home>/demo/summary.json. Exits 1 when a stage fails (the gate keeping the
    champion is not a failure).
    """
    from lathe.demo.runner import SIZES, DemoLoop, write_summary
    from lathe.demo.stages import STAGES
    from lathe.errors import ConfigError

    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)} (got {size!r})", param="size")
    s = settings()
    out = err_console if json_output else console
    loop = DemoLoop(
        s,
        SIZES[size],
        say=lambda line: out.rule(line, align="left") if line.startswith("[") else out.print(line, highlight=False),
    )
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
        console.print(f"summary: {path}", highlight=False)
    if not ok:
        raise typer.Exit(1)


def summary_table(summary: dict) -> Table:
    total = summary["total_seconds"]
    budget = " (budget 15:00)" if summary["size"]["name"] == "full" else ""
    installs = summary.get("install_seconds")
    caption = f"total {_clock(total)}{budget}" + (f"; installs before it {_clock(installs)}" if installs else "")
    table = Table(title="Lathe demo — the whole loop", title_justify="left", caption=caption, caption_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("result", overflow="fold")
    table.add_column("MLflow exp/run", no_wrap=True)
    style = {"ok": "green", "kept": "yellow", "skipped": "dim", "failed": "bold red"}
    for stage in summary["stages"]:
        mark = {"ok": "✔", "kept": "■", "skipped": "–", "failed": "✘"}[stage["status"]]
        table.add_row(
            f"[{style[stage['status']]}]{mark}[/] {stage['name']}",
            _clock(stage["seconds"]),
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


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"
