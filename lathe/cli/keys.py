"""``lathe keys …``: API keys and their usage, through the gateway's admin API.

The admin key is read from ``LATHE_GATEWAY_ADMIN_KEY`` or ``.lathe/gateway/admin_key``
(written, mode 600, by the first ``lathe up``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from lathe.cli.output import console, print_json, settings

app = typer.Typer(help="Create, list and revoke gateway API keys, and show their usage.", no_args_is_help=True)


def admin_key(s) -> str:
    from lathe.errors import ConfigError

    key = s.gateway.admin_key.get_secret_value() if s.gateway.admin_key else None
    path = s.gateway_dir / "admin_key"
    if not key and path.exists():
        key = path.read_text().strip()
    if not key:
        raise ConfigError(f"no admin key: set LATHE_GATEWAY_ADMIN_KEY or start the platform (it writes {path})")
    return key


def admin_call(method: str, path: str, json_body: dict | None = None) -> Any:
    """The JSON answer of an admin route of the local gateway, called with the admin key."""
    from lathe.cli.gateway_client import GatewayClient

    client = GatewayClient(
        api_key=admin_key(settings()),
        timeout=30,
        refused="gateway refused ({status}): ",
        unreachable="the gateway at {base} does not answer",
        hint="start it with `lathe up`",
        any_failure_unreachable=True,
    )
    return client.call(method, path, json=json_body)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the key (unique): who or what uses it."),
    models: str = typer.Option("", "--models", help="Comma-separated models it may use (default: all)."),
    rpm: int | None = typer.Option(None, "--rpm", min=1, help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", min=1, help="Tokens per minute (prompt + completion)."),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Lifetime token budget."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Cap on max_tokens per request."),
    tools: str = typer.Option("", "--tools", help="Comma-separated agent tools it may call (default: all)."),
    expires: str | None = typer.Option(None, "--expires", help="Expiry date or time, ISO format (2027-01-31)."),
    guardrails: list[str] = typer.Option(
        [], "--guardrail", help="A guardrail on its requests and answers, NAME[:ACTION]: pii, pii:mask, injection."
    ),
    team: str | None = typer.Option(None, "--team", help="The team it belongs to (lathe teams create)."),
    spend_budgets: list[str] = typer.Option(
        [], "--spend-budget", help="USD/PERIOD on top of its team's, e.g. 5/day; one per period."
    ),
    cache: list[str] = typer.Option(
        [], "--cache", help="A response cache for its non-streamed requests: exact, semantic (or both)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the key and its settings as JSON."),
) -> None:
    """Create a key. The key itself is printed once, now: store it; only its hash is kept."""
    from lathe.cli.teams import parse_budget
    from lathe.errors import InvalidRequestError

    if expires:
        try:
            dt.datetime.fromisoformat(expires)
        except ValueError:
            raise InvalidRequestError(f"--expires {expires!r} is not an ISO date (e.g. 2027-01-31)") from None
    body = {
        "name": name,
        "models": [m.strip() for m in models.split(",") if m.strip()],
        "rpm": rpm,
        "tpm": tpm,
        "budget": budget,
        "max_tokens": max_tokens,
        "tools": [t.strip() for t in tools.split(",") if t.strip()],
        "expires_at": expires,
        "guardrails": [_guardrail(g) for g in guardrails],
        "team": team,
        "spend_budgets": [parse_budget(b) for b in spend_budgets],
        "cache": cache,
    }
    created = admin_call("POST", "/admin/keys", body)
    if json_output:
        print_json(created)
        return
    console.print(f"created key [bold]{created['name']}[/]: {created['key']}")
    console.print("[yellow]This is the only time the key is shown. Store it now.[/]")


def _guardrail(text: str) -> dict:
    """``NAME[:ACTION]`` as the admin API takes it (the gateway checks the name and the action)."""
    name, _, action = text.partition(":")
    return {"name": name, **({"action": action} if action else {})}


@app.command("list")
def list_keys(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List keys with their limits and state (never the keys themselves)."""
    keys = admin_call("GET", "/admin/keys")["data"]
    if json_output:
        print_json(keys)
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("name", "prefix", "team", "models", "rpm", "tpm", "budget", "cache", "expires", "state"):
        table.add_column(column)
    for k in keys:
        state = "active" if k["active"] else ("revoked" if k["revoked_at"] else "expired")
        table.add_row(
            k["name"],
            k["key_prefix"] + "…",
            k.get("team") or "-",
            ",".join(k["models"]) or "all",
            str(k["rpm"] or "-"),
            str(k["tpm"] or "-"),
            str(k["budget"] or "-"),
            ",".join(k.get("cache", [])) or "-",
            (k["expires_at"] or "-")[:16],
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="The key's name."),
    json_output: bool = typer.Option(False, "--json", help="Print the revoked key as JSON."),
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    revoked = admin_call("DELETE", f"/admin/keys/{name}")
    if json_output:
        print_json(revoked)
        return
    console.print(f"revoked key [bold]{revoked['name']}[/]")


@app.command("usage")
def usage(
    name: str = typer.Argument(..., help="The key's name."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Requests, tokens and spend a key has used, by model, and what is left of its budgets."""
    from lathe.cli.teams import print_spend

    report = admin_call("GET", f"/admin/keys/{name}/usage")
    if json_output:
        print_json(report)
        return
    team = f" (team {report['team']})" if report.get("team") else ""
    print_spend(f"usage of {report['key']}{team}", report)
    left = "" if report["budget"] is None else f", budget left {report['budget_left']} of {report['budget']}"
    console.print(f"total: {report['requests']} requests, {report['total_tokens']} tokens{left}")
