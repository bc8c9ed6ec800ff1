"""`lathe demo`'s runner: stages in order, a failure stops the loop and is reported, the summary is kept."""

import io
import json

import pytest
from rich.console import Console

from lathe.cli.demo import summary_table
from lathe.demo.runner import SIZES, DemoLoop, DemoRow, Stage, StageFailed, sparkline, write_summary
from lathe.demo.stages import STAGES
from lathe.settings import LatheSettings
from tests.unit.cli.test_cli import lathe


@pytest.fixture
def loop(tmp_path):
    runner = DemoLoop(LatheSettings(home=tmp_path), SIZES["ci"], Console(file=io.StringIO(), width=200))
    runner.said = lambda: runner.lines.console.file.getvalue().splitlines()
    return runner


def test_a_command_returns_its_json_and_a_failing_one_names_itself(loop):
    result, payload = loop.command("echo", ["python", "-c", "print('{\"kept\": 3}')"])
    assert payload == {"kept": 3} and result.data["exit_code"] == 0
    assert result.command.startswith("python -c")
    with pytest.raises(StageFailed, match=r"boom: exited 3"):
        loop.command("boom", ["python", "-c", "import sys; sys.exit(3)"])
    _, refused = loop.command("gate", ["python", "-c", "print('{}'); import sys; sys.exit(1)"], ok_codes=(0, 1))
    assert refused == {}


def test_the_loop_stops_at_the_first_failure_and_the_summary_says_so(loop, tmp_path):
    ran = []

    def ok(name):
        def run(_):
            ran.append(name)
            return DemoRow(name, f"lathe {name}", figure=f"{name} done")

        return run

    def fail(_):
        raise StageFailed("train: `lathe train submit x` exited 2 (its error is printed above)")

    stages = [Stage("a", "first", ok("a")), Stage("b", "second", fail), Stage("c", "third", ok("c"))]
    assert loop.run(stages) is False
    assert ran == ["a"]
    assert loop.said()[0] == "[1/3] a: first"
    summary = loop.summary(12.0, install_seconds=300)
    assert summary["ok"] is False
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [("a", "ok"), ("b", "failed")]
    assert "exited 2" in summary["stages"][1]["figure"]
    path = write_summary(summary, tmp_path)
    assert json.loads(path.read_text()) == summary
    table = summary_table(summary)
    assert table.row_count == 2 and "installs before it 5:00" in str(table.caption)


def test_sizes_and_stages():
    assert STAGES[0].name == "platform" and STAGES[-1].name == "monitoring"
    full, ci = SIZES["full"], SIZES["ci"]
    assert ci.sft_steps < full.sft_steps and ci.pretrain_steps < full.pretrain_steps


def test_sparkline_follows_the_values():
    assert sparkline([5.0, 4.0, 3.0, 2.0, 1.0]) == "█▆▄▂▁"
    assert sparkline([1.0]) == ""


def test_an_unknown_size_is_refused_before_anything_starts(tmp_path):
    result = lathe("demo", "--size", "huge", env={"LATHE_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "--size must be one of full, ci" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_the_candidate_eval_fails_in_one_line_when_its_service_cannot_start(loop):
    """The candidate is scored on the platform's candidate service: with no platform running,
    the stage names that service and never submits its evaluation."""
    from lathe.demo.stages import evaluate_candidate

    loop.facts["candidate"] = "3"
    submitted = []
    loop.pipeline = lambda *args: submitted.append(args)
    with pytest.raises(StageFailed, match=r"candidate eval: the candidate service for v3 did not start: .*lathe up"):
        evaluate_candidate(loop)
    assert submitted == []
