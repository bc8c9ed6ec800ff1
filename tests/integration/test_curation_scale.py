"""Curation with ``decisions: distributed`` on a local Ray, in a process of its own per corpus:
the driver's peak memory does not grow with the corpus (with ``decisions: driver`` it grows by
about 46 % from 5,000 to 50,000 documents; ``make bench-scale`` prints both)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.corpus import article
from tests.unit.curation.small_corpus import edited

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
JOB = """
import json, sys
sys.path.insert(0, sys.argv[1])
import ray
from pipelines.curation.config import CurationConfig
from pipelines.curation.job import run_curation
def peak_kib():  # this process's own peak: ru_maxrss would carry the parent's over exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
config = CurationConfig.model_validate({
    "input": {"path": sys.argv[2]}, "output": sys.argv[3], "decisions": "distributed",
    "stages": {"quality": {"enabled": False}, "pii": {"enabled": False}}, "mlflow": {"enabled": False},
})
result = run_curation(config)
print(json.dumps({"kept": result.kept, "by_stage": result.counts_by_stage(),
                  "driver_kib": peak_kib()}))
"""


def corpus(path: Path, n: int) -> int:
    """``n`` documents, every tenth an edited copy of an earlier one; the number of copies."""
    rng = random.Random(n)
    copies = 0
    with open(path, "w") as out:
        texts: list[str] = []
        for i in range(n):
            if i % 10 == 9:
                text, copies = edited(texts[rng.randrange(len(texts))], 30), copies + 1
            else:
                text = article(rng, 60)
            texts.append(text)
            out.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
    return copies


def curate(tmp_path: Path, n: int) -> tuple[dict, int]:
    data = tmp_path / f"corpus-{n}.jsonl"
    copies = corpus(data, n)
    proc = subprocess.run(
        [sys.executable, "-c", JOB, str(REPO), str(data), str(tmp_path / f"out-{n}")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), copies


def test_the_drivers_memory_stays_flat_as_the_corpus_grows_tenfold(tmp_path):
    small, small_copies = curate(tmp_path, 3_000)
    large, large_copies = curate(tmp_path, 30_000)
    for result, copies in ((small, small_copies), (large, large_copies)):
        # the planted copies, no more (a copy of a copy edits the same words: an exact duplicate)
        assert result["by_stage"].get("near_dedup", 0) + result["by_stage"].get("exact_dedup", 0) == copies
    growth = large["driver_kib"] / small["driver_kib"] - 1
    assert growth <= 0.10, f"the driver's peak RSS grew {growth:.0%} for ten times the documents"
