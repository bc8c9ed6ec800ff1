"""`lathe train`: which stage a recipe runs, and how a job's log becomes progress and a result."""

from __future__ import annotations

import json

import pytest

from lathe.cli.train import ENTRY_POINTS, JobView, recipe_kind
from lathe.errors import ConfigError
from lathe.jobs import RESULT_PREFIX, parse_progress, progress_line


def test_every_kind_maps_to_a_pipeline_module_with_a_main():
    import importlib

    for module in set(ENTRY_POINTS.values()):
        assert callable(importlib.import_module(module + ".__main__").main)


def test_a_recipe_without_a_known_kind_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("kind: pretrian\nname: x\n")
    with pytest.raises(ConfigError, match="kind must be one of"):
        recipe_kind(path)
    path.write_text("kind: sft\n")
    assert recipe_kind(path) == "sft"


def test_progress_lines_round_trip_through_ray_log_prefixes():
    line = "(RayTrainWorker pid=1) " + progress_line(20, 300, {"loss": 3.25, "tokens_per_s": 8123.4})
    assert parse_progress(line) == {"step": 20, "total": 300, "loss": 3.25, "tokens_per_s": 8123}
    assert parse_progress("Checkpoint successfully created") is None


def test_the_job_view_keeps_the_result_and_the_stage_error(capsys):
    view = JobView("pretrain", quiet=True)
    with view:
        view.line(progress_line(1, 10, {"loss": 9.0}))
        view.line(progress_line(1, 10, {"loss": 9.0}))  # delivered twice: counted once
        view.line("pretrain: recipe r.yaml: training.max_steps: Input should be greater than or equal to 1")
        view.line(RESULT_PREFIX + json.dumps({"stage": "pretrain", "steps": 10}))
    assert view.result == {"stage": "pretrain", "steps": 10}
    assert view.error == "recipe r.yaml: training.max_steps: Input should be greater than or equal to 1"
    assert view.last_step == 1


# -- --with-deps ---------------------------------------------------------------------------
def test_with_deps_runs_the_missing_tokenizer_first_then_the_recipe(monkeypatch, clean_lathe_env, tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from lathe.cli import app

    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    ran = []

    def run_recipe(s, recipe, sets, *, address, local, wait, quiet):
        ran.append((Path(recipe).name, list(sets), wait))
        return {"stage": Path(recipe).stem, "name": "n", "metrics": {}, "job_id": f"job-{len(ran)}"}

    monkeypatch.setattr("lathe.cli.train.run_recipe", run_recipe)
    recipes = Path(__file__).resolve().parents[3] / "pipelines" / "recipes"
    sets = ["--set", f"tokenizer={tmp_path / 'tok'}", "--set", f"data.path={tmp_path / 'curated'}"]
    argv = ["train", "submit", str(recipes / "pretrain-tiny.yaml"), *sets, "--with-deps", "--json", "--no-wait"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert [name for name, _, _ in ran] == ["tokenizer.yaml", "pretrain-tiny.yaml"]
    assert ran[0][1][0] == f"output={tmp_path / 'tok'}" and ran[0][2] is True  # a dependency always runs to its end
    assert ran[1][2] is False
    assert json.loads(result.stdout)["job_id"] == "job-2"  # only the recipe's own result on stdout

    ran.clear()
    result = CliRunner().invoke(app, [a for a in argv if a != "--with-deps"])  # only the recipe
    assert [name for name, _, _ in ran] == ["pretrain-tiny.yaml"]


def test_with_deps_is_refused_where_it_cannot_see_the_outputs(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from lathe.cli import app

    recipe = Path(__file__).resolve().parents[3] / "pipelines" / "recipes" / "pretrain-tiny.yaml"
    for extra in (["--k8s"], ["--address", "http://ray-head:8265"]):
        result = CliRunner().invoke(app, ["train", "submit", str(recipe), "--with-deps", *extra])
        assert result.exit_code != 0
        assert "--with-deps" in str(result.exception) + result.output


def test_a_missing_tokenizer_names_with_deps(tmp_path, capsys):
    from pathlib import Path

    from pipelines.pretrain.__main__ import main

    recipe = Path(__file__).resolve().parents[3] / "pipelines" / "recipes" / "pretrain-tiny.yaml"
    argv = ["--config", str(recipe), "--set", f"tokenizer={tmp_path}", "--set", "mlflow.enabled=false", "--check"]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"pretrain: tokenizer: {tmp_path} is not a tokenizer folder")
    assert "lathe train submit pipelines/recipes/tokenizer.yaml" in line and "--with-deps" in line
