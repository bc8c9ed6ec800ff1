"""``lathe audit``: the gateway's audit log, through its admin API.

    lathe audit [--since 1h] [--key NAME] [--limit N] [--json]

One row per request that passed authentication: when, which key, model and version,
route, tokens, status and each guardrail's decision (never the text).
"""

from __future__ import annotations

import urllib.parse

import typer
from rich.table import Table

from lathe.cli.keys import admin_call
from lathe.cli.output import console, print_json


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    since: str = typer.Option("1h", "--since", help="How far back: a duration (30m, 2h, 7d) or an ISO time."),
    key: str | None = typer.Option(None, "--key", help="Only this key's requests (its name or id)."),
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000, help="At most this many rows, the newest."),
    json_output: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """The gateway's audit log: who asked which model and version, tokens, guardrails, status."""
    query = {"since": since, "limit": limit, **({"key": key} if key else {})}
    rows = admin_call("GET", "/admin/audit?" + urllib.parse.urlencode(query))["data"]
    if json_output:
        print_json(rows)
        return
    table = Table(title=f"audit log since {since}", title_justify="left")
    for column in ("time", "key", "model", "version", "route", "tokens in/out", "status", "guardrails"):
        table.add_column(column)
    for r in rows:
        guards = ", ".join(f"{name}:{action}" for name, action in r["guardrails"].items()) or "-"
        table.add_row(r["time"][:19], r["key"], r["model"], r["version"] or "-", r["route"],
                      f"{r['prompt_tokens']}/{r['completion_tokens']}", str(r["status"]), guards)  # fmt: skip
    console.print(table)
