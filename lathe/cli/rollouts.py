"""``lathe models rollout | rollouts | rollback``: progressive delivery through the gateway.

The gateway runs the rollout (weights, analysis, the decision); these commands ask it
to start one, show them, or roll one back. On the local platform ``rollout`` first
starts the candidate inference service pinned to the version, beside the champion.
"""

from __future__ import annotations

import getpass
import socket
import time
from typing import Any

import typer
from rich.table import Table

from lathe.cli.output import console, err_console, print_json, settings

TERMINAL = ("promoted", "rolled_back")


def requested_by() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def parse_steps(text: str) -> list[float]:
    from lathe.errors import ConfigError

    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--steps {text!r}: give percents separated by commas, e.g. 5,25,50", param="steps") from None


def _admin(method: str, path: str, body: dict | None = None) -> Any:
    from lathe.cli.keys import admin_call

    return admin_call(method, path, body)


def start_rollout(spec: dict[str, Any]) -> dict[str, Any]:
    return _admin("POST", "/admin/rollouts", {**spec, "requested_by": requested_by()})


def list_rollouts(model: str | None = None) -> list[dict[str, Any]]:
    return _admin("GET", "/admin/rollouts" + (f"?model={model}" if model else ""))["data"]


def _local_candidate(version: str) -> None:
    """On the local platform, run the candidate inference service pinned to ``version``."""
    from lathe.platform.local import LocalPlatform

    platform = LocalPlatform(settings())
    with err_console.status(f"starting the candidate inference service for v{version}…") as spinner:
        platform.start_candidate(version, progress=lambda msg: spinner.update(msg))
    err_console.print(f"candidate inference service serves v{version}", highlight=False)


def rollout(
    name: str = typer.Argument(..., help="Registered model name (as the gateway serves it)."),
    version: str = typer.Option(..., "--version", "-v", help="The candidate version."),
    steps: str = typer.Option("5,25,50", "--steps", help="The candidate's share per step, in percent."),
    step_seconds: float = typer.Option(60.0, "--step-seconds", help="Least time per step."),
    step_requests: int = typer.Option(20, "--step-requests", help="Least requests on the candidate per step."),
    max_error_rate_delta: float = typer.Option(1.0, "--max-error-rate-delta", help="Percentage points over."),
    max_ttft_ratio: float = typer.Option(1.5, "--max-ttft-ratio", help="Candidate/champion TTFT p95."),
    max_itl_ratio: float = typer.Option(1.5, "--max-itl-ratio", help="Candidate/champion inter-token p95."),
    max_quality_drop: float = typer.Option(0.1, "--max-quality-drop", help="Feedback/judge mean, 0..1."),
    judge: str | None = typer.Option(None, "--judge", help="A served model that grades sampled answers."),
    judge_sample: float = typer.Option(0.2, "--judge-sample", help="Share of answers the judge grades."),
    alias: str = typer.Option("champion", "--alias", "-a", help="The alias the promotion moves."),
    reason: str = typer.Option("", "--reason", help="Why: recorded with the rollout and in MLflow."),
    candidate_service: bool = typer.Option(
        None, "--candidate-service/--no-candidate-service",
        help="Start the local candidate inference service first (default: when the gateway is local).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow it to the end; exit 1 if it is rolled back."),
    timeout_s: float = typer.Option(3600.0, "--timeout", help="With --wait: give up following after this."),
    json_output: bool = typer.Option(False, "--json", help="Print the rollout as JSON."),
) -> None:  # fmt: skip
    """Roll a version out step by step; the gateway promotes it or rolls it back on its own."""
    spec = {
        "model": name,
        "version": version,
        "alias": alias,
        "steps": [
            {"weight": w, "min_duration_s": step_seconds, "min_requests": step_requests} for w in parse_steps(steps)
        ],
        "thresholds": {
            "max_error_rate_delta": max_error_rate_delta,
            "max_ttft_p95_ratio": max_ttft_ratio,
            "max_itl_p95_ratio": max_itl_ratio,
            "max_quality_drop": max_quality_drop,
        },
        "judge": {"model": judge, "sample_rate": judge_sample} if judge else None,
        "reason": reason,
    }
    if candidate_service is None:
        candidate_service = settings().gateway.url is None
    if candidate_service:
        _local_candidate(version)
    created = start_rollout(spec)
    if not wait:
        if json_output:
            print_json(created)
        else:
            shares = " → ".join(f"{s['weight']:g}%" for s in created["steps"])
            console.print(f"rollout {created['id']}: {name} v{version} against v{created['champion']}: {shares} → 100%")
        return
    final = follow(name, created["id"], timeout_s, quiet=json_output)
    if json_output:
        print_json(final)
    if final["state"] != "promoted":
        raise typer.Exit(1)


def follow(name: str, rollout_id: str, timeout_s: float, quiet: bool = False) -> dict[str, Any]:
    """One live line while it runs, a line per transition; the rollout at its end."""
    from lathe.errors import LatheError

    out = err_console if quiet else console
    deadline = time.monotonic() + timeout_s
    shown = 0
    with out.status("waiting for the gateway…") as spinner:
        while True:
            current = next((r for r in list_rollouts(name) if r["id"] == rollout_id), None)
            if current is None:
                raise LatheError(f"rollout {rollout_id} is gone from the gateway")
            for entry in current["history"][shown:]:
                out.print(transition_line(entry), highlight=False, markup=False)
            shown = len(current["history"])
            if current["state"] in TERMINAL:
                return current
            if time.monotonic() > deadline:
                raise LatheError(f"rollout {rollout_id} is still {current['state']} after {timeout_s:g} s")
            step = f"step {current['step']}/{len(current['steps'])}" if current["step"] else current["state"]
            spinner.update(f"{name} v{current['version']}: {step}, {current['weight']:g}% of traffic")
            time.sleep(1.0)


def transition_line(entry: dict[str, Any]) -> str:
    figures = ""
    if "candidate" in entry and "champion" in entry:
        c, h = entry["candidate"], entry["champion"]
        figures = (
            f" (candidate {c['requests']} req, {c['error_rate_pct']}% err, TTFT p95 {_s(c['ttft_p95_s'])}"
            f" · champion {h['requests']} req, {h['error_rate_pct']}% err, TTFT p95 {_s(h['ttft_p95_s'])})"
        )
    step = f" step {entry['step']} ({entry['weight']:g}%)" if entry.get("weight") else ""
    return f"{entry['event']}{step}: {entry['reason']}{figures}"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3g} s"


def rollouts(
    name: str | None = typer.Argument(None, help="Only this model's rollouts."),
    json_output: bool = typer.Option(False, "--json", help="Print them as JSON."),
) -> None:
    """List active and past rollouts, newest first, with their steps and figures."""
    found = list_rollouts(name)
    if json_output:
        print_json(found)
        return
    from rich.markup import escape

    table = Table(title="Rollouts", title_justify="left")
    for column in ("id", "model", "candidate", "champion", "state", "steps", "last decision"):
        table.add_column(column)
    for r in found:
        marks = [
            f"[bold]{s['weight']:g}[/]" if i + 1 == r["step"] else f"{s['weight']:g}" for i, s in enumerate(r["steps"])
        ]
        last = escape(transition_line(r["history"][-1])) if r["history"] else "-"
        champion = f"v{r['champion']}" if r["champion"] else "-"
        table.add_row(r["id"], r["model"], f"v{r['version']}", champion, r["state"], " → ".join(marks), last)
    console.print(table)


def rollback(
    name: str = typer.Argument(..., help="Registered model name."),
    reason: str = typer.Option("", "--reason", help="Why: recorded with the rollout and in MLflow."),
    json_output: bool = typer.Option(False, "--json", help="Print the rollout as JSON."),
) -> None:
    """End the active rollout now, or undo the last promotion: the alias returns to the previous champion."""
    result = _admin(
        "POST", "/admin/rollouts/rollback", {"model": name, "reason": reason, "requested_by": requested_by()}
    )
    if json_output:
        print_json(result)
        return
    back = f"v{result['champion']}" if result["champion"] else "the champion"
    console.print(f"rolled back {name} v{result['version']}: traffic and @{result['alias']} stay on {back}")


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout)
    app.command("rollouts")(rollouts)
    app.command("rollback")(rollback)
