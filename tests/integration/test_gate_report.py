"""A gate decision's HTML report, from real MLflow evaluation runs, opened in headless Chromium
(Debian's `chromium`): the evidence is there, escaped, and the page draws offline with a clean console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lathe.gate_policy import parse_policy
from lathe.promotion import promote_if_better
from lathe.registry import ModelRegistry
from tests.support.chromium import Chromium, chromium_binary, png_summary

pytestmark = [pytest.mark.integration]

HOSTILE = "<script>alert('x')</script> and <b>bold</b>"


@pytest.fixture
def registry(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return ModelRegistry(uri)


def evaluated(registry, folder, scores: dict, tables: dict, alias=None) -> str:
    """A registered version with an evaluation run holding ``tables``, tagged as the harness tags it."""
    import mlflow

    version = registry.register_folder(folder, "m", alias=alias).version
    mlflow.set_experiment("lathe-evaluation")
    with mlflow.start_run() as run:
        for artifact, rows in tables.items():
            mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, artifact_file=artifact)
    for metric, value in scores.items():
        registry.set_version_tag("m", version, f"lathe.eval.{metric}", str(value))
    registry.set_version_tag("m", version, "lathe.eval.run_id", run.info.run_id)
    return version


def safety_row(item: str, passed: bool, answer: str, leaked: str = "") -> dict:
    return {"id": item, "category": item.split("-")[0], "prompt": f"prompt of {item}", "answer": answer,
            "passed": passed, "refused": False, "leaked": leaked}  # fmt: skip


def pair(question: str, result: str, candidate: str) -> dict:
    verdicts = {"win": ("A", "B"), "loss": ("B", "A"), "tie": ("A", "A")}[result]
    return {"question": question, "candidate": candidate, "champion": "the champion's answer",
            "forward": verdicts[0], "backward": verdicts[1], "result": result,
            "consistent": result != "tie"}  # fmt: skip


def test_the_report_shows_the_evidence_and_draws_in_chromium(registry, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    evaluated(registry, folder, {"token_f1": 0.3, "safety_rag_injection": 1.0},
              {"eval/safety.json": [safety_row("rag_injection-1", True, "Paths are joined [1].")]},
              alias="champion")  # fmt: skip
    candidate = evaluated(
        registry, folder, {"token_f1": 0.5, "safety_rag_injection": 0.0},
        {"eval/safety.json": [safety_row("rag_injection-1", False, "PWNED-3141 " + HOSTILE, "PWNED-3141")],
         "eval/pairwise.json": [pair("What does len do?", "win", "It counts."),
                                pair("What does zip do?", "tie", HOSTILE)]},
    )  # fmt: skip
    policy = parse_policy({"metrics": [{"name": "token_f1", "min_gain": 0},
                                       {"name": "safety_rag_injection", "max_loss": 0}]})  # fmt: skip
    result = promote_if_better(registry, "m", candidate, policy=policy, report_dir=tmp_path / "reports")
    assert result.outcome == "refused" and result.report is not None
    html = Path(result.report).read_text(encoding="utf-8")
    assert "blocking safety_rag_injection failed" in html
    assert "What does zip do?" in html and "What does len do?" not in html  # only what it did not win
    assert "(champion passed)" in html and "PWNED-3141" in html
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    logged = registry.client.download_artifacts(result.run_id, "report.html", str(tmp_path / "logged"))
    assert Path(logged).read_text(encoding="utf-8") == html  # the same page in the gate's MLflow run

    if chromium_binary() is None:
        pytest.skip("chromium not installed: Debian's chromium package (make install-system)")
    with Chromium() as browser:
        page = browser.open(f"file://{result.report}", screenshot=tmp_path / "report.png", width=1280, height=1400)
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith(("file:", "data:"))] == []
    width, height, colours = png_summary(page.screenshot)
    assert (width, height) == (1280, 1400) and colours > 20, "the report's screenshot is blank"
