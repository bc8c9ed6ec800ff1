"""The curation job on the platform's real Ray head, submitted through the Jobs API,
logging to the real MLflow server."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import yaml

from tests.support.corpus import article

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(3)
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    docs.mkdir()
    originals = [article(rng) for _ in range(40)]
    # Files are read in path order and the first of a duplicate set stays: copies sort last.
    for i, text in enumerate(originals):
        (docs / f"page{i:02d}.txt").write_text(text)
    (docs / "zz-copy-of-page03.md").write_text(originals[3])  # exact duplicate
    words = originals[7].split()
    for j in range(0, len(words), 25):  # 4 % of the words edited
        words[j] = "changed"
    (docs / "zz-edited-page07.txt").write_text(" ".join(words))
    (docs / "contact.html").write_text(
        f"<html><body><p>{article(rng)} Write to ada.lovelace@example.org or call +1 415-555-0132.</p>"
        "<p>Card 4111 1111 1111 1111 and server 192.168.1.10.</p></body></html>"
    )
    (docs / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 80)
    (docs / "empty.txt").write_text("   \n")
    (docs / "spam.txt").write_text("buy now " * 100)
    return root


def test_curation_runs_as_a_ray_job_and_reports(platform, corpus):
    recipe = corpus / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "it-corpus",
                "input": {"path": str(corpus / "docs")},
                "output": str(corpus / "out"),
                "stages": {"quality": {"min_words": 40}},
                "mlflow": {"experiment": "it-curation", "dataset_name": "it-curated"},
            }
        )
    )
    result = platform.lathe("data", "curate", "--config", str(recipe), "--json", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)

    assert summary["documents_in"] == 46
    assert summary["dropped_by_stage"] == {"read": 2, "quality": 1, "exact_dedup": 1, "near_dedup": 1}
    assert summary["documents_kept"] == 41
    reasons = summary["drop_reasons"]
    assert reasons["read: empty document"] == 1
    assert reasons["read: not valid UTF-8 or UTF-16 text"] == 1
    assert any(r.startswith("quality: gopher") for r in reasons)
    assert summary["pii_redacted"]["email"] == 1 and summary["pii_redacted"]["phone"] == 1
    assert summary["pii_redacted"]["credit_card"] == 1 and summary["pii_redacted"]["ip_address"] == 1
    assert summary["near_duplicate_clusters"] == 1

    out = corpus / "out"
    kept = pd.concat(pd.read_parquet(f) for f in (out / "data").glob("*.parquet"))
    assert {"id", "text"} <= set(kept.columns)
    assert "page07.txt" in set(kept["id"]) and "zz-edited-page07.txt" not in set(kept["id"])
    contact = kept[kept["id"] == "contact.html"]["text"].iloc[0]
    assert "<EMAIL>" in contact and "ada.lovelace" not in contact
    rejects = pd.concat(pd.read_parquet(f) for f in (out / "rejects").glob("*.parquet"))
    assert {"id", "stage", "reason"} <= set(rejects.columns)
    near = rejects[rejects["stage"] == "near_dedup"].iloc[0]
    assert near["id"] == "zz-edited-page07.txt" and near["reason"] == "near duplicate of page07.txt"
    assert "<img" in (out / "report.html").read_text()

    import mlflow

    client = mlflow.MlflowClient(platform.mlflow_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["documents_kept"] == 41
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["it-curated"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/report.html" in artifacts


def test_a_bad_recipe_fails_before_any_job(platform, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({"input": {"path": str(tmp_path)}, "output": "x", "stages": {"dedupe": {}}}))
    result = platform.lathe("data", "curate", "--config", str(recipe))
    assert result.returncode == 2
    assert "stages.dedupe: unknown key" in result.stderr
