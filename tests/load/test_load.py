"""The load suite's short version, against a platform of its own (conftest.py): about
three minutes after ``lathe up``.

- embeddings through the gateway with the official OpenAI client (served by the RAG
  service's MiniLM);
- the mix, back to back, for 45 s: every scenario served, no error but the low-rpm
  key's expected 429s, that key held to its quota;
- a 60 s mini-soak at the soak's fixed rate: the same, plus the gateway's RSS growth
  after a 15 s warm-up and p99 of the last 30 s against the first 30 s.

Nothing here asserts an absolute latency or rate: the machine is shared and slow; only
the first-vs-last comparison of one run against itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import openai
import pytest

from tests.support.platform import REPO, Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_embeddings_through_the_gateway_with_the_openai_client(platform: Platform, api_key: str):
    client = openai.OpenAI(base_url=platform.gateway_url + "/v1", api_key=api_key, max_retries=0)
    texts = ["How do I join two paths?", "Use os.path.join to join path components.", "Pears grow on trees."]
    result = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    assert result.model == "all-minilm-l6-v2" and result.usage.prompt_tokens > len(texts)
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    similarity = vectors @ vectors.T  # unit vectors: cosine similarity
    assert similarity[0, 1] > similarity[0, 2]  # the question is nearer its answer than the pears
    assert "all-minilm-l6-v2" in {m.id for m in client.models.list().data}
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="all-minilm-l6-v2", input=[""])


def run_load(platform: Platform, api_key: str, *args: str, timeout: float) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "tests.load.run", *args, "--json"],
        env={**platform.env, "LATHE_LOAD_API_KEY": api_key},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode in (0, 1), f"the load run did not happen:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def verdicts(report: dict) -> dict:
    return {c["name"]: c for c in report["criteria"]}


def test_the_mix_serves_every_scenario_with_no_error_but_expected_429s(platform, api_key, collection, tmp_path):
    report = run_load(
        platform, api_key, "--scenario", "mix", "--users", "4", "--duration", "45s", "--csv-dir", str(tmp_path),
        timeout=240,
    )  # fmt: skip
    criteria = verdicts(report)
    errors = criteria["errors other than 429"]
    assert errors["passed"], json.dumps([errors, report["failures"]])  # with Locust's messages
    scenarios = report["scenarios"]
    for name in ("chat", "stream", "stream ttft", "embeddings", "rag", "agent"):
        assert scenarios[name]["ok"] >= 1, (name, scenarios.get(name))
    assert criteria["low-rpm key held to its quota"]["passed"], criteria["low-rpm key held to its quota"]
    assert report["totals"]["rate_limited_unexpected"] == 0
    assert report["passed"]
    for csv in ("locust_stats.csv", "locust_failures.csv", "samples.csv", "summary.json"):
        assert (tmp_path / csv).exists(), csv


def test_a_mini_soak_holds_memory_and_latency(platform, api_key, collection, tmp_path):
    report = run_load(
        platform, api_key, "--soak", "--duration", "60s", "--warmup", "15s", "--window", "30s",
        "--rss-interval", "2", "--csv-dir", str(tmp_path), timeout=180,
    )  # fmt: skip
    criteria = verdicts(report)
    errors = criteria["errors other than 429"]
    assert errors["passed"], json.dumps([errors, report["failures"]])  # with Locust's messages
    assert criteria["every scenario served"]["passed"], criteria["every scenario served"]
    rss = criteria["gateway RSS growth after warm-up"]
    assert rss["passed"], rss
    p99 = criteria["p99 stable (first vs last window)"]
    assert p99["passed"] is not False, p99
    assert report["passed"]
    assert (tmp_path / "soak-report.json").exists()
