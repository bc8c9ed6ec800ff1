"""`lathe data curate`: the command users were promised (`--input PATH --output DIR`, the shipped
recipe by default), and the result line it reads back from the job."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lathe.cli import app
from lathe.jobs import JobOutcome, StageResult

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake_job(monkeypatch, clean_lathe_env, tmp_path):
    """The check and the Ray job, recorded; the job writes a summary and ends with its result line."""
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    calls: dict[str, list] = {"check": [], "job": []}

    def check(argv, **kwargs):
        calls["check"].append(argv)
        return subprocess.CompletedProcess(argv, 0, "recipe is valid\n", "")

    def submit_and_follow(settings, argv, *, address=None, env=None, cwd=None, on_line=print):
        calls["job"].append(argv)
        out = Path(argv[argv.index("--output") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"documents_in": 3, "documents_kept": 2}))
        on_line("[curation] 3 documents read and cleaned")
        on_line(StageResult(stage="curation", name="python-docs", output=str(out)).line())
        return JobOutcome("raysubmit_1", "SUCCEEDED", 1.0)

    monkeypatch.setattr("lathe.cli.data.subprocess.run", check)
    monkeypatch.setattr("lathe.jobs.submit_and_follow", submit_and_follow)
    return calls


def test_input_and_output_alone_run_the_shipped_recipe(fake_job, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = CliRunner().invoke(
        app, ["data", "curate", "--input", str(corpus), "--output", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    (argv,) = fake_job["job"]
    assert argv[1:3] == ["-m", "pipelines.curation"]
    assert Path(argv[argv.index("--config") + 1]) == (REPO / "pipelines" / "recipes" / "curation.yaml").resolve()
    assert argv[argv.index("--input") + 1] == str(corpus.resolve())
    assert argv[argv.index("--output") + 1] == str((tmp_path / "out").resolve())
    assert fake_job["check"] == [[*argv, "--check"]]
    assert json.loads(result.stdout) == {"documents_in": 3, "documents_kept": 2}  # the job's lines went to stderr


def test_the_recipes_own_output_is_used_without_output(fake_job, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"input: {{path: {tmp_path}}}\noutput: {tmp_path / 'curated'}\n")
    result = CliRunner().invoke(app, ["data", "curate", "--config", str(recipe)])
    assert result.exit_code == 0, result.output
    (argv,) = fake_job["job"]
    assert argv[argv.index("--config") + 1] == str(recipe.resolve())
    assert argv[argv.index("--output") + 1] == str(tmp_path / "curated")
    assert "--input" not in argv
    assert "LATHE_RESULT" not in result.stdout  # the result line is read, not shown


def test_the_shipped_recipe_is_found_from_another_folder(monkeypatch, tmp_path):
    from lathe.cli.data import default_recipe

    monkeypatch.chdir(tmp_path)
    path = default_recipe()
    assert path.is_file() and path.parts[-3:] == ("pipelines", "recipes", "curation.yaml")


def test_a_job_without_a_result_line_is_an_error(fake_job, monkeypatch, tmp_path):
    def silent(settings, argv, **kwargs):
        return JobOutcome("raysubmit_2", "SUCCEEDED", 1.0)

    monkeypatch.setattr("lathe.jobs.submit_and_follow", silent)
    result = CliRunner().invoke(app, ["data", "curate", "--output", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "ended without a result line" in str(result.exception) + result.output
