"""The evaluation gate as ``lathe models promote --if-better-than`` / ``--policy`` runs and prints it."""

from __future__ import annotations

import typer
from rich.table import Table

from lathe.cli.output import console, err_console, print_json, settings


def run_gate(registry, name: str, version: str, gate: tuple, json_output: bool):
    """Decide (and move the alias, unless told not to); print the decision; exit 1 when refused.

    ``gate``: (alias, against, metric, margin, move, policy), as ``promote`` parsed them.
    """
    from lathe.promotion import DEFAULT_METRIC, promote_if_better

    alias, against, metric, margin, move, policy = gate
    result = promote_if_better(
        registry,
        name,
        version,
        alias=alias,
        metric=metric or DEFAULT_METRIC,
        margin=margin or 0.0,
        against=against,
        move=move,
        policy=policy,
        report_dir=settings().home / "reports",
    )
    if json_output:
        if result.outcome != "canary":  # the caller prints it with what comes next
            print_json(result.to_dict())
    else:
        print_decision(result, name, against)
    if result.outcome == "refused":
        d = result.decision
        failed = "fails the policy against" if d.checks else "does not beat"
        measured = "" if d.checks else f" on {d.metric}"
        err_console.print(
            f"[bold red]refused:[/] {name} v{result.candidate_version} {failed} @{against} "
            f"(v{result.champion_version}){measured}: {d.reason}; @{alias} stays on v{result.version}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    return result


def print_decision(result, name: str, against: str) -> None:
    d, alias = result.decision, result.alias
    champion_label = f"@{against} v{result.champion_version}" if result.champion_version else f"@{against}"
    if d.checks:
        table = Table(title=f"{name}: v{result.candidate_version} against {champion_label}", title_justify="left")
        for column in ("metric", "candidate", "champion", "rule", "verdict"):
            table.add_column(column)
        for c in d.checks:
            verdict = ("[green]pass[/]" if c.passed else "[red]fail[/]") + ("" if c.blocking else " (advisory)")
            champ = f"{c.champion:.4g}" if c.champion is not None else "-"
            table.add_row(c.metric, f"{c.candidate:.4g}", champ, c.rule, f"{verdict}: {c.reason}")
        console.print(table)
        if result.outcome != "refused":  # a refusal says why below
            console.print(d.reason, highlight=False)
    else:
        table = Table(title=f"{name}: v{result.candidate_version} against @{against}", title_justify="left")
        for column in ("", "version", d.metric):
            table.add_column(column)
        table.add_row("candidate", f"v{result.candidate_version}", f"{d.candidate_value:.4g}")
        champion = f"{d.champion_value:.4g}" if d.champion_value is not None else "-"
        table.add_row(f"@{against}", f"v{result.champion_version}" if result.champion_version else "-", champion)
        console.print(table)
        better = "higher" if d.higher_is_better else "lower"
        console.print(f"{better} is better, margin {d.margin:g}: {d.reason}")
    if result.outcome == "promoted":
        before = f"v{result.previous_version} → " if result.previous_version else ""
        console.print(f"[bold green]promoted[/] {name}@{alias}: {before}v{result.version}")
    elif result.outcome == "unchanged":
        console.print(f"{name}@{alias} already points at v{result.version}: nothing to do")
    elif result.outcome == "canary":
        console.print(f"[bold green]passed the gate[/]: v{result.candidate_version} goes out as a rollout")
    if result.report:
        console.print(f"report: {result.report}", highlight=False, soft_wrap=True)
