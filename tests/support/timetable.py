"""The time table printed at the end of a test run: seconds per suite, against each suite's budget.

A suite is a folder of tests/unit (``unit/gateway``), a module of tests/integration
(``integration/test_gateway``), or a whole tree (``e2e``, ``load``). Its time is the wall
time of its tests' setup, call and teardown, so a platform started by a fixture counts
towards the suite that first asked for it. Budgets come from ``suite_budgets`` in
pyproject.toml (``suite = seconds`` lines; ``*`` sets the default for a tree). A suite
over its budget is marked in the table, never failed: tests do not fail on wall-clock
time, and a suite that outgrows its budget is made faster, not given more.

``--time-table-json PATH`` also writes the figures as JSON (``make test`` keeps them in
``.lathe/test-times.json``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path

import pytest

_started = time.monotonic()
_seconds: dict[str, float] = defaultdict(float)
_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def suite_of(nodeid: str) -> str:
    """The suite of a test: ``unit/gateway``, ``integration/test_gateway``, ``e2e``, ``load``."""
    parts = nodeid.split("::", 1)[0].split("/")
    if parts and parts[0] == "tests":
        parts = parts[1:]
    if not parts:
        return "?"
    if parts[0] == "unit" and len(parts) > 2:
        return f"unit/{parts[1]}"
    if parts[0] == "integration" and len(parts) > 1:
        return f"integration/{Path(parts[1]).stem}"
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def budget_for(suite: str, budgets: dict[str, float]) -> float | None:
    if suite in budgets:
        return budgets[suite]
    matches = [pattern for pattern in budgets if fnmatch(suite, pattern)]
    return budgets[max(matches, key=len)] if matches else None


def parse_budgets(lines: list[str]) -> dict[str, float]:
    budgets = {}
    for line in lines:
        if line.strip():
            suite, _, seconds = line.partition("=")
            budgets[suite.strip()] = float(seconds)
    return budgets


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("suite_budgets", "seconds each suite may take: 'suite = seconds' lines", type="linelist")
    parser.addoption("--time-table-json", metavar="PATH", help="also write the time per suite as JSON to PATH")
    parser.addoption(
        "--time-table-before", metavar="SECONDS", type=float, default=None,
        help="seconds spent before pytest (installs, lint): shown as a row and counted in the total",
    )  # fmt: skip


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    suite = suite_of(report.nodeid)
    _seconds[suite] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _counts[suite][report.outcome] += 1


def table_rows(budgets: dict[str, float]) -> list[dict]:
    rows = []
    for suite in sorted(_seconds, key=lambda s: (s.split("/")[0], -_seconds[s])):
        budget = budget_for(suite, budgets)
        seconds = _seconds[suite]
        rows.append({"suite": suite, "seconds": round(seconds, 2), "budget": budget,
                     "over": budget is not None and seconds > budget, **_counts[suite]})  # fmt: skip
    return rows


def _line(row: dict) -> str:
    budget = _clock(row["budget"]) if row["budget"] is not None else "-"
    tests = ", ".join(f"{row[k]} {k}" for k in ("passed", "failed", "skipped") if row.get(k))
    mark = "  OVER BUDGET" if row["over"] else ""
    return f"{row['suite']:<34} {_clock(row['seconds']):>8} {budget:>8}  {tests}{mark}"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if not _seconds:
        return
    rows = table_rows(parse_budgets(config.getini("suite_budgets")))
    wall = time.monotonic() - _started
    write = terminalreporter.write_line
    terminalreporter.section("time per suite")
    write(f"{'suite':<34} {'time':>8} {'budget':>8}  tests")
    for row in rows:
        write(_line(row))
    over = [row["suite"] for row in rows if row["over"]]
    write(f"{'tests (wall)':<34} {_clock(wall):>8}" + (f"   over budget: {', '.join(over)}" if over else ""))
    before = config.getoption("time_table_before")
    if before is not None:
        write(f"{'installs and lint':<34} {_clock(before):>8}")
        write(f"{'total':<34} {_clock(before + wall):>8}")
    path = config.getoption("time_table_json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figures = {"wall_seconds": round(wall, 1), "before_seconds": before, "suites": rows}
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")
