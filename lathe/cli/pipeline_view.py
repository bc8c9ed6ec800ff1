"""What ``lathe pipeline run`` shows while the driver works: one line per stage, the rest to a log.

The driver's job log holds everything its stages print; this turns its
``LATHE_PIPELINE`` events into a line per stage (live on a terminal: a bar once the
stage reports steps) with the stage's time, MLflow run and outputs, and writes every
line to a log file whose path a failure prints. With ``--json`` (a script, or
``lathe demo``), the lines go to stderr as they come and stdout keeps the JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from lathe.demo.stage_lines import StageLines
from lathe.jobs import parse_progress
from lathe.pipeline_events import parse_event


def figure(event: dict[str, Any], run_folder: str = "") -> str:
    """A finished stage's line: its MLflow run and what it handed on (paths inside the run's folder, shortened)."""
    outputs = {k: str(v) for k, v in (event.get("outputs") or {}).items() if k not in ("run", "checkpoints")}
    folders = [v for v in outputs.values() if v.startswith(run_folder)] if run_folder else []
    shown = []
    for key, value in outputs.items():
        if any(value.startswith(folder + "/") for folder in folders):
            continue  # a file inside a folder already shown
        shown.append(f"{key} {value.removeprefix(run_folder)}" if run_folder else f"{key} {value}")
    run = f"MLflow run {event['run_id'][:12]}" if event.get("run_id") else ""
    return " · ".join(part for part in (run, *shown) if part)


class PipelineView:
    def __init__(self, console: Console, log: Path, *, passthrough: bool) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._sink = log.open("a", encoding="utf-8")
        self.passthrough = passthrough
        live = console.is_terminal and not console.is_dumb_terminal and not passthrough
        self.lines = StageLines(console, live=live)
        self.stages: list[str] = []
        self.kinds: dict[str, str] = {}
        self.run_folder = ""  # <storage>/<pipeline>/<run>/, left out of the paths shown
        self.end: dict[str, Any] | None = None
        self.preflight_error: str | None = None
        self.failed: dict[str, Any] | None = None

    def __enter__(self) -> PipelineView:
        self.lines.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lines.__exit__(*exc)
        self._sink.close()

    def line(self, line: str) -> None:
        self._sink.write(line + "\n")
        self._sink.flush()
        if self.passthrough:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        if line.startswith("pipeline: "):  # the driver's one-line refusal, before any stage
            self.preflight_error = line.removeprefix("pipeline: ")
        event = parse_event(line)
        if event is None:
            stats = parse_progress(line)
            if stats is not None:
                self.lines.steps(stats["step"], stats["total"])
            return
        self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        if event["event"] == "start":
            self.stages = [s["name"] for s in event.get("stages", [])]
            self.kinds = {s["name"]: s["kind"] for s in event.get("stages", [])}
            self.run_folder = f"{event.get('storage')}/{event.get('pipeline')}/{event.get('run')}/"
        elif event["event"] == "stage":
            name = event["stage"]
            number = self.stages.index(name) + 1 if name in self.stages else 0
            if event.get("status") == "running":
                self.lines.start(number, len(self.stages), name, self.kinds.get(name, ""))
            elif event.get("status") == "done":
                self.lines.end("ok", event.get("seconds") or 0, figure(event, self.run_folder))
            elif event.get("status") == "failed":
                self.failed = event
                self.lines.end("failed", event.get("seconds") or 0, event.get("error", ""))
        elif event["event"] == "end":
            self.end = event
