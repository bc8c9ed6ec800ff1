"""Every stage's one entry point, and the one typed result it hands the CLI.

A stage prints ``LATHE_RESULT {json}`` on stderr; `lathe train submit` and `lathe data
curate` read it back as a ``StageResult`` and print it (with the Ray job id) for scripts.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lathe.errors import PlatformError
from lathe.jobs import RESULT_PREFIX, StageResult

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "pipelines" / "recipes"
STAGES = [
    ("pipelines.curation", "curation.yaml", "curation"),
    ("pipelines.tokenizer", "tokenizer.yaml", "tokenizer"),
    ("pipelines.pretrain", "pretrain-tiny.yaml", "pretrain"),
    ("pipelines.finetune", "sft-lora-smollm2.yaml", "finetune"),
    ("pipelines.evaluate", "evaluate.yaml", "evaluate"),
]
# What `lathe train submit --json` printed before the result was typed; the demo and scripts read these.
RESULT_KEYS = {"stage", "name", "status", "run_id", "model_name", "model_version", "model_path", "steps", "metrics"}


@pytest.mark.parametrize(("module", "recipe", "stage"), STAGES, ids=[s[2] for s in STAGES])
def test_every_stage_names_a_bad_field_in_one_line_with_exit_2(module, recipe, stage, capsys):
    main = importlib.import_module(module + ".__main__").main
    code = main(["--config", str(RECIPES / recipe), "--set", "bogus=1", "--check"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines == [f"{stage}: recipe {RECIPES / recipe}: bogus: unknown key (this recipe has no such setting)"]


@pytest.mark.parametrize(("module", "recipe", "stage"), STAGES, ids=[s[2] for s in STAGES])
def test_every_stage_takes_the_common_flags(module, recipe, stage, capsys):
    main = importlib.import_module(module + ".__main__").main
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"python -m {module}" in shown
    for flag in ("--config", "--set", "--json", "--check"):
        assert flag in shown, (stage, flag)


def test_a_bad_set_pair_is_named(capsys):
    from pipelines.tokenizer.__main__ import main

    assert main(["--config", str(RECIPES / "tokenizer.yaml"), "--set", "vocab_size", "--check"]) == 2
    assert "--set 'vocab_size': expected FIELD=VALUE" in capsys.readouterr().err


def test_the_result_line_round_trips_with_every_key():
    result = StageResult(stage="pretrain", name="tiny", run_id="abc", steps=3, metrics={"loss": 2.5, "rows": 7})
    line = result.line()
    assert line.startswith(RESULT_PREFIX)
    back = StageResult.from_line(line)
    assert back == result and back.metrics == {"loss": 2.5, "rows": 7}
    keys = set(json.loads(line[len(RESULT_PREFIX) :]))
    assert RESULT_KEYS | {"mlflow_url", "output", "checkpoints", "seconds"} <= keys
    assert StageResult.from_line("(RayTrainWorker pid=1) lathe-progress step=1/3 loss=2") is None


def test_a_newer_stage_key_is_kept_and_a_broken_line_is_named():
    line = RESULT_PREFIX + json.dumps({"stage": "sft", "name": "n", "tokens": 12})
    assert StageResult.from_line(line).model_dump()["tokens"] == 12
    with pytest.raises(PlatformError, match=r"not a Lathe result \(name\)"):
        StageResult.from_line(RESULT_PREFIX + json.dumps({"stage": "sft"}))
    with pytest.raises(PlatformError, match="not JSON"):
        StageResult.from_line(RESULT_PREFIX + "{")


@pytest.fixture
def curated(tmp_path) -> Path:
    texts = [f"document {i} says the river and the harbour and the station {i % 7}" for i in range(60)]
    path = tmp_path / "curated.parquet"
    pd.DataFrame({"id": [str(i) for i in range(60)], "text": texts}).to_parquet(path)
    return path


def test_with_json_stdout_holds_the_summary_alone(curated, tmp_path, capsys):
    from pipelines.tokenizer.__main__ import main

    sets = [f"data.path={curated}", "vocab_size=300", "mlflow.enabled=false"]
    argv = ["--config", str(RECIPES / "tokenizer.yaml"), "--output", str(tmp_path / "tok"), "--json"]
    assert main([*argv, *(a for pair in sets for a in ("--set", pair))]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["stage"] == "tokenizer" and summary["output"] == str(tmp_path / "tok")
    assert StageResult.from_line(err.strip().splitlines()[-1]).model_dump(mode="json") == summary


def test_a_stage_prints_its_result_and_lathe_train_submit_parses_it(curated, tmp_path):
    """The whole path for the tokenizer (no Ray needed): the stage's line -> `submit --local --json`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    env["LATHE_HOME"] = str(tmp_path / "home")
    sets = [f"data.path={curated}", f"output={tmp_path / 'tok'}", "vocab_size=300"]
    sets.append("mlflow.enabled=false")
    argv = [sys.executable, "-m", "lathe.cli", "train", "submit", str(RECIPES / "tokenizer.yaml"), "--local", "--json"]
    for pair in sets:
        argv += ["--set", pair]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert RESULT_KEYS | {"job_id", "output", "mlflow_url", "seconds"} <= set(printed)
    assert (printed["stage"], printed["status"], printed["job_id"]) == ("tokenizer", "FINISHED", None)
    assert printed["output"] == printed["model_path"] == str(tmp_path / "tok")
    assert printed["metrics"]["vocab_size"] == 300
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
