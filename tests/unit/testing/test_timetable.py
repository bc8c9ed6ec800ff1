"""The time table `make test` prints: every suite with its time, budget and counts."""

from __future__ import annotations

import json

import pytest

from tests.support.platform import REPO
from tests.support.timetable import budget_for, parse_budgets, suite_of

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("nodeid", "suite"),
    [
        ("tests/unit/gateway/test_quotas.py::test_race", "unit/gateway"),
        ("tests/integration/test_gateway.py::test_chat[stream]", "integration/test_gateway"),
        ("tests/e2e/test_demo.py::test_loop", "e2e"),
        ("tests/load/test_load.py::test_mix", "load"),
    ],
)
def test_a_test_belongs_to_its_folder_or_module(nodeid, suite):
    assert suite_of(nodeid) == suite


def test_an_exact_budget_wins_over_a_tree_default():
    budgets = parse_budgets(["unit/* = 60", "integration/* = 300", "integration/test_training = 600", ""])
    assert budget_for("unit/gateway", budgets) == 60
    assert budget_for("integration/test_training", budgets) == 600
    assert budget_for("integration/test_gateway", budgets) == 300
    assert budget_for("e2e", budgets) is None


def test_the_run_ends_with_the_table_and_its_json(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner run imports the plugin from this checkout
    pytester.makeconftest('pytest_plugins = ["tests.support.timetable"]')
    pytester.makeini("[pytest]\nsuite_budgets =\n    unit/* = 0.0001\n    integration/* = 100\n")
    pytester.makepyfile(
        **{
            "tests/unit/fast/test_a.py": "import time\n"
            "def test_one():\n    time.sleep(0.01)\n"
            "def test_two():\n    assert False",
            "tests/integration/test_b.py": "def test_three():\n    pass",
        }
    )
    out = pytester.path / "times.json"
    result = pytester.runpytest_subprocess(
        "tests", f"--time-table-json={out}", "--time-table-before=125", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(
        [
            "*time per suite*",
            "integration/test_b * 1:40  1 passed",
            "unit/fast * 1 passed, 1 failed  OVER BUDGET",
            "tests (wall)*",
            "installs and lint * 2:05",
            "total * 2:05",
        ]
    )
    figures = json.loads(out.read_text())
    rows = {row["suite"]: row for row in figures["suites"]}
    assert rows["unit/fast"]["over"] is True and rows["unit/fast"]["seconds"] >= 0.01
    assert rows["integration/test_b"]["over"] is False and rows["integration/test_b"]["budget"] == 100
    assert figures["before_seconds"] == 125
