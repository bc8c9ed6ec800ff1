"""The driver's decisions (exact, near, contamination) give the survivors the job gave before
they were split out of it: ``small_corpus_expected.json`` holds what the earlier
``run_curation`` kept and dropped on ``small_corpus`` (decontamination as it ran once its
index reached the workers)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipelines.curation.config import CurationConfig
from pipelines.curation.decisions import contaminated, exact_duplicates, mark, near_duplicates
from pipelines.curation.decontaminate import build_index
from pipelines.curation.dedup import MinHashParams
from pipelines.curation.job import META_COLUMNS, read_eval_sets
from pipelines.curation.sources import jsonl_record
from pipelines.curation.stages import clean_batch, contamination_batch, signature_batch
from tests.unit.curation import small_corpus

EXPECTED = json.loads((Path(__file__).parent / "small_corpus_expected.json").read_text())
MODES = ["off", "drop", "flag"]


def config_for(root: Path, mode: str) -> CurationConfig:
    data = small_corpus.recipe(root, "drop" if mode == "off" else mode)
    data["stages"]["decontaminate"]["enabled"] = mode != "off"
    return CurationConfig.model_validate(data)


def survivors(meta: pd.DataFrame) -> dict:
    dropped = meta[meta["stage"].notna()]
    return {
        "kept": sorted(meta[meta["stage"].isna()]["id"]),
        "dropped": sorted([r.id, r.stage, r.reason] for r in dropped.itertuples()),
        "flagged": sorted(meta[meta["contaminated"]]["id"]),
    }


def expected(mode: str) -> dict:
    return {k: EXPECTED[mode][k] for k in ("kept", "dropped", "flagged")}


def decide_without_ray(config: CurationConfig) -> tuple[pd.DataFrame, list[int]]:
    """The job's steps on one pandas frame: read, clean, then the driver's decisions."""
    path = config.input.path
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    records = [jsonl_record(line, n + 1, path, "text", "id") for n, line in enumerate(lines)]
    cleaned = clean_batch(pd.DataFrame(records), config.stages)
    meta = cleaned[META_COLUMNS].copy()
    alive = meta["stage"].isna()
    decisions = exact_duplicates(meta[alive])
    near = config.stages.near_dedup
    params = near.params()
    remaining = meta[alive & ~meta["key"].isin(decisions)]
    rows = cleaned[cleaned["key"].isin(set(remaining["key"]))]
    found, result = near_duplicates(remaining, signature_batch(rows, params), params)
    decisions.update(found)
    flagged: set[str] = set()
    contamination = config.stages.decontaminate
    if contamination.enabled:
        remaining = meta[alive & ~meta["key"].isin(decisions)]
        rows = cleaned[cleaned["key"].isin(set(remaining["key"]))]
        index = build_index(read_eval_sets(contamination.eval_sets), contamination.ngram)
        hits = contamination_batch(rows, index, contamination.ngram)
        dropped, flagged = contaminated(hits, contamination.ngram, contamination.mode)
        decisions.update(dropped)
    return mark(meta, decisions, flagged), result.cluster_sizes


@pytest.mark.parametrize("mode", MODES)
def test_the_decisions_keep_the_same_survivors(tmp_path, mode):
    meta, clusters = decide_without_ray(config_for(tmp_path, mode))
    assert survivors(meta) == expected(mode)
    assert clusters == EXPECTED[mode]["clusters"]


def test_nothing_left_to_compare_decides_nothing():
    params = MinHashParams()
    decisions, result = near_duplicates(pd.DataFrame({"key": [], "id": []}), pd.DataFrame(), params)
    assert decisions == {} and result.cluster_sizes == [] and len(result.keep) == 0
    assert contaminated(pd.DataFrame(), 13, "drop") == ({}, set())


def marked_row_by_row(meta: pd.DataFrame, decisions: dict, flagged: set[str]) -> pd.DataFrame:
    """How the job marked its decisions before: one ``meta.loc`` per decision (O(N x D))."""
    for key, (stage, reason) in decisions.items():
        meta.loc[meta["key"] == key, ["stage", "reason"]] = [stage, reason]
    meta["contaminated"] = meta["key"].isin(flagged)
    return meta


def test_marking_at_once_equals_marking_row_by_row():
    meta = pd.DataFrame(
        {
            "key": ["a", "b", "b", "c", "d"],
            "id": ["1", "2", "2", "3", "4"],
            "stage": [None, None, None, "quality", None],
            "reason": [None, None, None, "too short", None],
        }
    )
    decisions = {"b": ("exact_dedup", "exact duplicate of 1"), "d": ("near_dedup", "near duplicate of 1")}
    marked = mark(meta.copy(), decisions, flagged={"a"})
    pd.testing.assert_frame_equal(marked, marked_row_by_row(meta.copy(), decisions, {"a"}))
    assert list(marked["stage"].fillna("-")) == ["-", "exact_dedup", "exact_dedup", "quality", "near_dedup"]
    assert list(marked["contaminated"]) == [True, False, False, False, False]
    pd.testing.assert_frame_equal(mark(meta.copy(), {}, set()), marked_row_by_row(meta.copy(), {}, set()))


@pytest.mark.parametrize("mode", MODES)
def test_marking_the_small_corpus_equals_marking_row_by_row(tmp_path, mode):
    config = config_for(tmp_path, mode)
    meta, _ = decide_without_ray(config)
    decisions = {
        r.key: (r.stage, r.reason)
        for r in meta.itertuples()
        if r.stage in ("exact_dedup", "near_dedup", "decontaminate")
    }
    flagged = set(meta[meta["contaminated"]]["key"])
    unmarked = meta.drop(columns="contaminated")
    unmarked.loc[unmarked["key"].isin(decisions), ["stage", "reason"]] = None
    pd.testing.assert_frame_equal(
        mark(unmarked.copy(), decisions, flagged), marked_row_by_row(unmarked.copy(), decisions, flagged)
    )


@pytest.fixture(scope="module")
def one_cpu_ray():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_the_job_on_ray_keeps_the_same_survivors(one_cpu_ray, tmp_path, mode):
    from pipelines.curation.job import run_curation

    result = run_curation(config_for(tmp_path, mode))
    assert survivors(result.meta) == expected(mode)
    assert (result.total, result.kept, result.cluster_sizes) == tuple(
        EXPECTED[mode][k] for k in ("total", "kept_count", "clusters")
    )
    kept = pd.concat(pd.read_parquet(f) for f in result.data_files)
    assert sorted(kept["id"]) == EXPECTED[mode]["kept"]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "blocks", "partition_rows"), [("drop", 16, 500_000), ("flag", 4, 3)])
def test_distributed_decisions_keep_the_same_survivors(one_cpu_ray, tmp_path, mode, blocks, partition_rows):
    """Decided on the workers, with the corpus in 16 or 4 blocks and the shuffles in one partition
    (components in one task) or many (3 rows each: star rounds), the survivors, reasons, clusters
    and output order are the single-process ones. ``test_partitions`` splits each step 1, 4 and 16 ways."""
    from pipelines.curation.job import run_curation

    config = config_for(tmp_path, mode)
    total = EXPECTED[mode]["total"]
    config = config.model_copy(
        update={"decisions": "distributed", "partition_rows": partition_rows, "batch_size": -(-total // blocks)}
    )
    result = run_curation(config)
    assert survivors(result.meta) == expected(mode)
    assert (result.total, result.kept, result.cluster_sizes) == tuple(
        EXPECTED[mode][k] for k in ("total", "kept_count", "clusters")
    )
    assert result.counts_by_stage() == dict(Counter(stage for _, stage, _ in EXPECTED[mode]["dropped"]))
    kept = pd.concat(pd.read_parquet(f) for f in sorted(result.data_files))
    assert list(kept["id"]) == in_input_order(config.input.path, EXPECTED[mode]["kept"])


def in_input_order(path: str, ids: list[str]) -> list[str]:
    """``ids`` (a multiset) in the order the corpus file lists them."""
    left = Counter(ids)
    order = []
    for line in Path(path).read_text().splitlines():
        doc = json.loads(line)["id"] if line.strip() else None
        if doc is not None and left[doc] > 0:
            order.append(doc)
            left[doc] -= 1
    return order
