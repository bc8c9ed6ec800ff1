"""The lines a pipeline's driver prints about its stages, and the status read back from them.

    LATHE_PIPELINE {"event": "start", "pipeline": "demo", "run": "20261205-0830-ab12", "stages": [...]}
    LATHE_PIPELINE {"event": "stage", "stage": "pretrain", "status": "running"}
    LATHE_PIPELINE {"event": "stage", "stage": "pretrain", "status": "done", "seconds": 41.2, "run_id": "…", ...}
    LATHE_PIPELINE {"event": "end", "status": "succeeded", "state": {...}}

They survive Ray's log forwarding and a submitter pod's log as text, so
``lathe pipeline status`` reads the same lines from a local Ray job and from a RayJob.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PREFIX = "LATHE_PIPELINE "


def event_line(event: str, **fields: Any) -> str:
    return PREFIX + json.dumps({"event": event, **fields}, default=str)


def parse_event(line: str) -> dict[str, Any] | None:
    """The event a line carries (the prefix may follow a log prefix); None for any other line."""
    _, found, body = line.partition(PREFIX)
    if not found:
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "event" in data else None


def summarize(lines: Iterable[str]) -> dict[str, Any]:
    """The pipeline's state as its events tell it: every stage with its latest status."""
    summary: dict[str, Any] = {"pipeline": None, "run": None, "status": "pending", "stages": []}
    stages: dict[str, dict[str, Any]] = {}
    for line in lines:
        event = parse_event(line)
        if event is None:
            continue
        if event["event"] == "start":
            summary.update(pipeline=event.get("pipeline"), run=event.get("run"), storage=event.get("storage"))
            summary["status"] = "running"
            for stage in event.get("stages", []):
                stages[stage["name"]] = {**stage, "status": "pending"}
        elif event["event"] == "stage":
            entry = stages.setdefault(event["stage"], {"name": event["stage"]})
            entry.update({k: v for k, v in event.items() if k not in ("event", "stage")})
        elif event["event"] == "end":
            summary["status"] = event.get("status", "failed")
            if event.get("error"):
                summary["error"] = event["error"]
    summary["stages"] = list(stages.values())
    return summary


def stage_lines(lines: Iterable[str], stage: str) -> list[str]:
    """The lines printed while ``stage`` ran (between its running and its last event)."""
    out, inside = [], False
    for line in lines:
        event = parse_event(line)
        if event is not None and event.get("event") == "stage" and event.get("stage") == stage:
            inside = event.get("status") == "running"
            continue
        if event is not None and event.get("event") == "stage":
            inside = False
        if inside:
            out.append(line)
    return out
