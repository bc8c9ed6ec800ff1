"""The curation job with ``decisions: distributed``: every decision made on the workers.

After cleaning, the driver handles datasets and counters only: the stages in
``distributed.py`` produce decision rows (ordinal, stage, reason, flagged), which are
merged into the corpus by a shuffle on ordinal ranges, and the summary is aggregated on
the workers. What the driver
collects is bounded whatever the corpus size: a row per block, per drop reason, per
cluster size, and a sample of at most ``META_SAMPLE`` rows for the report's plots.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.curation import distributed as dist
from pipelines.curation.config import CurationConfig
from pipelines.curation.decontaminate import build_index
from pipelines.curation.job import META_COLUMNS, CurationResult, StageTiming, Tally, clean_dataset, write_output
from pipelines.curation.reading import read_eval_sets
from pipelines.curation.stages import PII_COLUMNS, is_missing

META_SAMPLE = 20_000


def run_distributed(config: CurationConfig, fmt: str, timings: list[StageTiming]) -> CurationResult:
    import ray
    from ray.data.context import ShuffleStrategy

    # Groupbys by sort-based shuffle in tasks: the hash shuffle starts aggregator actors for every
    # operation (about 3 s each on 2 cores against 0.3 s for the sort).
    ray.data.DataContext.get_current().shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    started = time.monotonic()
    cleaned = clean_dataset(config, fmt)
    numbered, total = dist.number_rows(cleaned)
    numbered = numbered.materialize()
    timings.append(StageTiming("read, normalise, quality, pii", time.monotonic() - started, total))
    print(f"[curation] {total} documents read and cleaned ({timings[-1].docs_per_s:.0f} docs/s)", flush=True)
    alive = numbered.filter(lambda row: is_missing(row["stage"])).materialize()
    per = config.partition_rows
    decided: list = []
    roots: list = []
    stages = config.stages
    if stages.exact_dedup.enabled:
        decided.append(_stage("exact dedup", lambda: dist.exact_decisions(alive, per, total), timings, total))
    if stages.near_dedup.enabled:
        params = stages.near_dedup.params()

        def near_stage():
            skipped = _union(decided) if decided else None
            found, components = dist.near_decisions(alive, skipped, params, per, total)
            roots.append(components)
            return found

        decided.append(_stage("near dedup (MinHash + LSH)", near_stage, timings, total))
    if stages.decontaminate.enabled:
        contamination = stages.decontaminate
        index = build_index(read_eval_sets(contamination.eval_sets), contamination.ngram)

        def contamination_stage():
            return dist.contamination_decisions(alive, index, contamination.ngram, contamination.mode)

        decided.append(_stage("decontaminate", contamination_stage, timings, total))
    started = time.monotonic()
    final = _apply(numbered, decided, per, total).materialize()
    data_files = write_output(final, config)
    timings.append(StageTiming("write", time.monotonic() - started, total))
    return CurationResult(
        output=Path(config.output),
        tally=_tally(final, total),
        meta=_sample(final, total),
        cluster_histogram=dist.cluster_histogram(roots[0]) if roots else {},
        timings=timings,
        data_files=data_files,
    )


def _stage(name: str, build, timings: list[StageTiming], total: int):
    """Run one decision stage to the end; its decision rows (materialised), timed and reported."""
    started = time.monotonic()
    rows = build().map_batches(_decision_columns, batch_format="pandas").materialize()
    timings.append(StageTiming(name, time.monotonic() - started, total))
    found = rows.count()
    print(f"[curation] {name}: {found} decided on the workers ({timings[-1].docs_per_s:.0f} docs/s)", flush=True)
    return rows


def _decision_columns(batch: pd.DataFrame) -> pd.DataFrame:
    flagged = batch["flagged"] if "flagged" in batch else pd.Series(False, index=batch.index)
    return pd.DataFrame(
        {
            "ordinal": batch["ordinal"].to_numpy(np.int64),
            "stage": batch["stage"].astype(object),
            "reason": batch["reason"].astype(object),
            "flagged": flagged.astype(bool).to_numpy(),
        }
    )


def _union(decided: list):
    first, *rest = decided
    return first.union(*rest) if rest else first


def _apply(numbered, decided: list, per: int, total: int):
    """The corpus with each decision written into its stage and reason (and the flag), in input order.

    Documents and decision rows are mapped to one schema and shuffled together by ordinal
    range, so each partition holds a contiguous run of documents with their decisions.
    """
    if not decided:
        return numbered.map_batches(_flag_none, batch_format="pandas")
    docs = numbered.map_batches(_as_rows, fn_kwargs={"decision": False}, batch_format="pandas")
    rows = _union(decided).map_batches(_as_rows, fn_kwargs={"decision": True}, batch_format="pandas")
    n = dist.count_partitions(total, per)
    return dist.shuffle(docs.union(rows), "ordinal", _merge, n, ranges=max(total, 1))


STRINGS = ["key", "id", "text", "source", "stage", "reason", "exact_hash"]
INTEGERS = ["words_in", "words_out", *PII_COLUMNS, "ordinal"]


def _as_rows(batch: pd.DataFrame, decision: bool):
    """A document (or a decision) as a row of the one schema both are shuffled in."""
    import pyarrow as pa

    n = len(batch)
    columns = {}
    for name in STRINGS:
        values = batch[name].astype(object) if name in batch else pd.Series([""] * n, dtype=object)
        columns[name] = pa.array(values, type=pa.string(), from_pandas=True)  # None and NaN become nulls
    for name in INTEGERS:
        values = batch[name].to_numpy(np.int64) if name in batch else np.zeros(n, np.int64)
        columns[name] = pa.array(values, type=pa.int64())
    flagged = batch["flagged"].astype(bool).to_numpy() if decision else np.zeros(n, bool)
    columns["contaminated"] = pa.array(flagged, type=pa.bool_())
    columns["decision"] = pa.array(np.full(n, decision), type=pa.bool_())
    return pa.table(columns)


def _flag_none(batch: pd.DataFrame) -> pd.DataFrame:
    batch = batch.copy()
    batch["contaminated"] = False
    return batch


def _merge(rows: pd.DataFrame) -> pd.DataFrame:
    """One partition: its documents in ordinal order, each marked with its earliest decision."""
    is_decision = rows["decision"].astype(bool)
    docs = rows[~is_decision].drop(columns="decision").sort_values("ordinal", kind="stable")
    chosen = dist.parts.resolve(
        rows[is_decision][["ordinal", "stage", "reason", "contaminated"]].rename(columns={"contaminated": "flagged"})
    ).set_index("ordinal")
    stage = docs["ordinal"].map(chosen["stage"])
    decided = docs["stage"].isna() & stage.notna()
    docs.loc[decided, "stage"] = stage[decided]
    docs.loc[decided, "reason"] = docs["ordinal"].map(chosen["reason"])[decided]
    docs["contaminated"] = docs["ordinal"].map(chosen["flagged"]).fillna(False).astype(bool)
    return docs.reset_index(drop=True)


def _tally(final, total: int) -> Tally:
    """Counts by stage, reason and PII kind, aggregated on the workers."""

    def reasons(batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"stage": batch["stage"].fillna(""), "reason": batch["reason"].fillna("")})

    grouped = final.select_columns(["stage", "reason"]).map_batches(reasons, batch_format="pandas")
    by_stage: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for row in grouped.groupby(["stage", "reason"]).count().take_all():
        if row["stage"]:
            by_stage[row["stage"]] = by_stage.get(row["stage"], 0) + int(row["count()"])
            by_reason[f"{row['stage']}: {row['reason']}"] = int(row["count()"])
    sums = final.sum([*PII_COLUMNS, "contaminated"]) if total else {}
    return Tally(
        total=total,
        kept=total - sum(by_stage.values()),
        by_stage=dict(sorted(by_stage.items(), key=lambda kv: -kv[1])),
        reasons=by_reason,
        pii={c.removeprefix("pii_"): int(sums.get(f"sum({c})") or 0) for c in PII_COLUMNS},
        flagged=int(sums.get("sum(contaminated)") or 0),
    )


def _sample(final, total: int) -> pd.DataFrame:
    """Every document's metadata up to ``META_SAMPLE`` documents, a seeded sample beyond."""
    columns = final.select_columns([*META_COLUMNS, "contaminated"])
    if total > META_SAMPLE:
        columns = columns.random_sample(META_SAMPLE / total, seed=0)
    return columns.to_pandas()
