"""`lathe demo` keeps the terminal to one line per stage; what the stages' commands print goes to their logs.

The stages here run real small subprocesses that flood stderr the way Ray jobs and
weight loading do, then print their JSON result (or fail with exit 3).
"""

import io
import json
import re

import pytest
from rich.console import Console
from rich.text import Text

from lathe.commands import split_result
from lathe.demo.runner import SIZES, DemoLoop, Stage, write_summary
from lathe.settings import LatheSettings

FLOOD = "import sys\nfor i in range(300): print(f'flood line {i:04d}', file=sys.stderr)\n"
SUCCEEDS = FLOOD + "print('{\"kept\": 3}')"
FAILS = FLOOD + "sys.exit(3)"
REPORTS_STEPS = (
    "import sys, time\n"
    "for step in (2, 4): print(f'lathe-progress step={step}/4 loss=1.5', file=sys.stderr, flush=True)\n"
    "time.sleep(0.6)\nprint('{\"kept\": 4}')"
)


def command_stage(name: str, code: str) -> Stage:
    def run(loop: DemoLoop):
        result, payload = loop.command(name, ["python", "-c", code])
        result.figure = f"kept {payload['kept']}"
        return result

    return Stage(name, f"{name} things", run)


def demo_loop(tmp_path, *, tty: bool = False, verbose: bool = False, echo=None) -> DemoLoop:
    console = Console(file=io.StringIO(), force_terminal=tty, width=120)
    return DemoLoop(LatheSettings(home=tmp_path), SIZES["ci"], console, verbose=verbose, echo=echo)


def shown(loop: DemoLoop) -> list[str]:
    """What the terminal shows, control codes and colours removed."""
    return Text.from_ansi(loop.lines.console.file.getvalue()).plain.splitlines()


def test_off_a_terminal_each_stage_prints_its_start_and_end_lines_and_nothing_else(tmp_path):
    loop = demo_loop(tmp_path)
    assert loop.run([command_stage("one", SUCCEEDS), command_stage("finetune data", SUCCEEDS)]) is True
    lines = shown(loop)
    assert len(lines) == 4, lines
    assert lines[0] == "[1/2] one: one things"
    assert re.fullmatch(r"✔ \[1/2\] one  0:0\d  kept 3", lines[1]), lines[1]
    assert lines[2] == "[2/2] finetune data: finetune data things"
    assert re.fullmatch(r"✔ \[2/2\] finetune data  0:0\d  kept 3", lines[3]), lines[3]
    log = tmp_path / "logs" / "demo" / "finetune-data.log"
    held = log.read_text()
    assert held.startswith("$ python -c")  # the command, then all it printed
    assert held.endswith("".join(f"flood line {i:04d}\n" for i in range(300)))
    assert len(re.findall(r"flood line \d{4}", held)) == 300


def test_on_a_terminal_the_live_lines_end_as_stage_lines_and_the_flood_stays_in_the_log(tmp_path):
    loop = demo_loop(tmp_path, tty=True)
    assert loop.lines.live
    assert loop.run([command_stage("one", SUCCEEDS), command_stage("two", SUCCEEDS)]) is True
    text = "\n".join(shown(loop))
    assert "flood line" not in text
    assert re.search(r"✔ \[1/2\] one  0:0\d  kept 3", text) and re.search(r"✔ \[2/2\] two  0:0\d  kept 3", text)
    assert "flood line 0299" in (tmp_path / "logs" / "demo" / "two.log").read_text()


def test_a_stage_that_reports_steps_shows_a_bar(tmp_path):
    loop = demo_loop(tmp_path, tty=True)
    assert loop.run([command_stage("train", REPORTS_STEPS), command_stage("quiet", SUCCEEDS)]) is True
    frames = loop.lines.console.file.getvalue()
    before_quiet = frames.split("quiet")[0]
    assert "━" in before_quiet  # the bar, drawn while `train` ran


def test_a_failed_stage_prints_its_log_path_and_exactly_its_last_20_lines(tmp_path):
    loop = demo_loop(tmp_path)
    stages = [command_stage("one", SUCCEEDS), command_stage("boom", FAILS), command_stage("never", SUCCEEDS)]
    assert loop.run(stages) is False
    log = tmp_path / "logs" / "demo" / "boom.log"
    lines = shown(loop)
    assert re.fullmatch(r"✘ \[2/3\] boom  0:0\d  boom: exited 3 \(its log: .*boom\.log\)", lines[3]), lines[3]
    assert lines[4] == f"  log: {log} (last 20 lines)"
    assert lines[5:] == [f"  │ flood line {i:04d}" for i in range(280, 300)]
    summary = loop.summary(3.0, install_seconds=None)
    assert [(s["name"], s["status"], s["log"]) for s in summary["stages"]] == [
        ("one", "ok", str(tmp_path / "logs" / "demo" / "one.log")),
        ("boom", "failed", str(log)),
    ]


def test_verbose_passes_the_flood_through_and_still_prints_the_stage_lines(tmp_path):
    echo = io.StringIO()
    loop = demo_loop(tmp_path, tty=True, verbose=True, echo=echo)
    assert not loop.lines.live  # passed-through output would tear a live line
    assert loop.run([command_stage("one", SUCCEEDS)]) is True
    assert echo.getvalue().splitlines()[:300] == [f"flood line {i:04d}" for i in range(300)]
    lines = shown(loop)
    assert lines[0] == "[1/1] one: one things" and lines[1].startswith("✔ [1/1] one")
    assert "flood line 0299" in (tmp_path / "logs" / "demo" / "one.log").read_text()


def test_each_run_overwrites_a_stage_log_and_the_summary_names_it(tmp_path):
    for _ in range(2):
        loop = demo_loop(tmp_path)
        assert loop.run([command_stage("one", SUCCEEDS)]) is True
    log = tmp_path / "logs" / "demo" / "one.log"
    assert log.read_text().count("flood line 0000") == 1
    summary = loop.summary(1.0, install_seconds=None)
    stage = summary["stages"][0]
    assert stage["log"] == str(log)
    assert {"name", "command", "status", "seconds", "figure", "data", "run_url", "log"} <= set(stage)
    assert json.loads(write_summary(summary, tmp_path).read_text())["stages"][0]["log"] == str(log)


def test_stdout_besides_the_json_result_goes_to_the_log(tmp_path):
    loop = demo_loop(tmp_path)
    code = "import json\nprint('a line a library printed')\nprint(json.dumps({'kept': 5, 'runs': [1]}, indent=2))"
    assert loop.run([command_stage("one", code)]) is True
    assert loop.results[0].figure == "kept 5"
    assert "a line a library printed" in (tmp_path / "logs" / "demo" / "one.log").read_text()


@pytest.mark.parametrize(
    ("stdout", "payload", "rest"),
    [
        ('{"a": 1}\n', {"a": 1}, ""),
        ('noise\n{\n  "a": [1,\n    2]\n}\nmore noise\n', {"a": [1, 2]}, "noise\n\nmore noise"),
        ("[not json\n", {"output": "[not json"}, "[not json"),
        ("", None, ""),
    ],
)
def test_split_result_finds_the_json_document(stdout, payload, rest):
    assert split_result(stdout) == (payload, rest)


@pytest.mark.parametrize("fails", [False, True])
def test_lathe_demo_json_keeps_stdout_to_the_summary_and_stderr_to_the_stage_lines(tmp_path, monkeypatch, fails):
    from typer.testing import CliRunner

    from lathe.cli import app

    stages = [command_stage("one", SUCCEEDS)] + ([command_stage("boom", FAILS)] if fails else [])
    monkeypatch.setattr("lathe.demo.stages.STAGES", stages)
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["demo", "--size", "ci", "--json"])
    assert result.exit_code == (1 if fails else 0), result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [s["log"] for s in summary["stages"]] == [str(tmp_path / "logs" / "demo" / f"{s.name}.log") for s in stages]
    lines = result.stderr.splitlines()
    assert lines[0] == f"[1/{len(stages)}] one: one things" and lines[1].startswith(f"✔ [1/{len(stages)}] one  ")
    if not fails:
        assert len(lines) == 2, lines
        return
    assert lines[2] == "[2/2] boom: boom things" and lines[3].startswith("✘ [2/2] boom  ")
    assert lines[4].startswith("  log: ") and lines[5:] == [f"  │ flood line {i:04d}" for i in range(280, 300)]


def test_a_progress_bar_in_the_tail_shows_as_its_last_state(tmp_path):
    from lathe.demo.stage_lines import log_tail

    log = tmp_path / "x.log"
    log.write_bytes(b"start\n 10%|#\r 50%|#####\r100%|##########\nwindows line\r\ndone\n")
    assert log_tail(log) == ["start", "100%|##########", "windows line", "done"]
    assert log_tail(log, 2) == ["windows line", "done"]
    assert log_tail(tmp_path / "missing.log") == []
