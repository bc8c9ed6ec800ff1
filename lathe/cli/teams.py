"""``lathe teams …``: teams, their money budgets and their spend, through the gateway's admin API.

A team's keys draw on its budgets as well as their own (``lathe keys create --team T
--spend-budget 5/day``). A budget is USD per period: ``50/month``, ``5/day`` or ``200/total``.
"""

from __future__ import annotations

import typer
from rich.table import Table

from lathe.cli.keys import admin_call
from lathe.cli.output import console, print_json

app = typer.Typer(help="Create and list teams, and show their spend against their budgets.", no_args_is_help=True)


def parse_budget(text: str) -> dict:
    """``50/month``, ``$5/day``, ``100`` (total) as the admin API takes it; the gateway validates it."""
    from lathe.errors import InvalidRequestError

    amount, _, period = text.strip().lstrip("$").partition("/")
    try:
        usd = float(amount)
    except ValueError:
        raise InvalidRequestError(f"budget {text!r}: write USD/PERIOD, e.g. 50/month, 5/day or 100/total") from None
    return {"usd": usd, "period": period or "total"}


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The team's name (unique)."),
    budgets: list[str] = typer.Option([], "--spend-budget", help="USD/PERIOD, e.g. 50/month; one per period."),
    json_output: bool = typer.Option(False, "--json", help="Print the team as JSON."),
) -> None:
    """Create a team; its keys draw on its budgets."""
    created = admin_call("POST", "/admin/teams", {"name": name, "budgets": [parse_budget(b) for b in budgets]})
    if json_output:
        print_json(created)
        return
    limits = ", ".join(f"${b['usd']:g}/{b['period']}" for b in created["budgets"]) or "no budget"
    console.print(f"created team [bold]{created['name']}[/] ({limits})")


@app.command("list")
def list_teams(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Teams and their budgets."""
    teams = admin_call("GET", "/admin/teams")["data"]
    if json_output:
        print_json(teams)
        return
    table = Table(title="teams", title_justify="left")
    for column in ("name", "budgets", "created"):
        table.add_column(column)
    for t in teams:
        budgets = ", ".join(f"${b['usd']:g}/{b['period']}" for b in t["budgets"]) or "-"
        table.add_row(t["name"], budgets, t["created_at"][:16])
    console.print(table)


@app.command("usage")
def usage(
    name: str = typer.Argument(..., help="The team's name."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """A team's requests, tokens and spend by model, and its spend per period against its budgets."""
    report = admin_call("GET", f"/admin/teams/{name}/usage")
    if json_output:
        print_json(report)
        return
    print_spend(f"usage of team {report['team']}", report)


def print_spend(title: str, report: dict) -> None:
    """The by-model table and the spend lines that ``lathe keys usage`` and ``lathe teams usage`` share."""
    table = Table(title=title, title_justify="left")
    for column in ("model", "requests", "prompt tokens", "completion tokens", "spend (USD)"):
        table.add_column(column)
    for row in report["by_model"]:
        table.add_row(
            row["model"], str(row["requests"]), str(row["prompt_tokens"]), str(row["completion_tokens"]),
            f"{row['spend_usd']:.6f}",
        )  # fmt: skip
    console.print(table)
    spent = report["spend_usd"]
    console.print(f"spend: ${spent['day']:.6f} today, ${spent['month']:.6f} this month, ${spent['total']:.6f} in all")
    for b in report["spend_budgets"]:
        console.print(f"budget ${b['usd']:g}/{b['period']}: ${b['spent_usd']:.6f} spent, ${b['left_usd']:.6f} left")
