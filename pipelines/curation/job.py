"""The curation job on Ray Data: read, clean in parallel, deduplicate, decontaminate, write.

Per-document stages run as ``map_batches`` on the workers. Deduplication needs a view
of the whole corpus. With ``decisions: driver`` (the default) the small columns (key,
hash, MinHash signature) come back to the driver, which decides what to drop (memory
bounded by the pre-flight estimate) and sends the decisions back to the workers as one
object in the object store. With ``decisions: distributed`` the workers decide
(``job_distributed.py``) and the driver's memory stays flat as the corpus grows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lathe.errors import ConfigError
from pipelines.curation.config import CurationConfig
from pipelines.curation.decisions import Decisions, contaminated, exact_duplicates, mark, near_duplicates
from pipelines.curation.decontaminate import build_index
from pipelines.curation.reading import preflight, read_dataset, read_eval_sets
from pipelines.curation.stages import (
    PII_COLUMNS,
    apply_decisions,
    clean_batch,
    contamination_batch,
    is_missing,
    signature_batch,
)

log = logging.getLogger(__name__)

META_COLUMNS = ["key", "id", "source", "stage", "reason", "words_in", "words_out", "exact_hash", *PII_COLUMNS]


@dataclass
class StageTiming:
    name: str
    seconds: float
    documents: int

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


@dataclass
class Tally:
    """What the summary counts, from the whole corpus (the report's plots may read a sample of ``meta``)."""

    total: int
    kept: int
    by_stage: dict[str, int]
    reasons: dict[str, int]
    pii: dict[str, int]
    flagged: int

    @classmethod
    def of(cls, meta: pd.DataFrame) -> Tally:
        dropped = meta[meta["stage"].notna()]
        return cls(
            total=len(meta),
            kept=int(meta["stage"].isna().sum()),
            by_stage={str(k): int(v) for k, v in dropped["stage"].value_counts().items()},
            reasons={f"{s}: {r}": int(n) for (s, r), n in dropped.groupby(["stage", "reason"]).size().items()},
            pii={c.removeprefix("pii_"): int(meta[c].sum()) for c in PII_COLUMNS},
            flagged=int(meta["contaminated"].sum()) if "contaminated" in meta and len(meta) else 0,
        )


@dataclass
class CurationResult:
    output: Path
    tally: Tally
    meta: pd.DataFrame  # every document, or a bounded sample of them with decisions: distributed
    cluster_histogram: dict[int, int]  # near-duplicate cluster size -> clusters
    timings: list[StageTiming] = field(default_factory=list)
    memory_estimate_bytes: int = 0
    data_files: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.tally.total

    @property
    def kept(self) -> int:
        return self.tally.kept

    @property
    def cluster_sizes(self) -> list[int]:
        return [size for size, n in sorted(self.cluster_histogram.items()) for _ in range(n)]

    def counts_by_stage(self) -> dict[str, int]:
        return self.tally.by_stage

    def reasons(self) -> dict[str, int]:
        return self.tally.reasons

    def pii_counts(self) -> dict[str, int]:
        return self.tally.pii


def run_curation(config: CurationConfig, *, ray_address: str | None = None) -> CurationResult:
    import ray

    fmt = preflight(config)
    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # "the first one seen stays" must mean the same every run
    timings: list[StageTiming] = []
    if config.decisions == "distributed":
        from pipelines.curation.job_distributed import run_distributed

        return run_distributed(config, fmt, timings)
    return _run_on_driver(config, fmt, timings)


def _run_on_driver(config: CurationConfig, fmt: str, timings: list[StageTiming]) -> CurationResult:
    stages = config.stages
    cleaned, meta = _read_and_clean(config, fmt, timings)
    decisions: Decisions = {}
    alive = meta["stage"].isna()
    if stages.exact_dedup.enabled:
        decisions.update(_exact_dedup(meta[alive], timings))
    cluster_sizes: list[int] = []
    estimate = 0
    if stages.near_dedup.enabled:
        remaining = meta[alive & ~meta["key"].isin(decisions)]
        near, cluster_sizes, estimate = _near_dedup(cleaned, remaining, stages, timings)
        decisions.update(near)
    flagged: set[str] = set()
    if stages.decontaminate.enabled:
        remaining = meta[alive & ~meta["key"].isin(decisions)]
        dropped, flagged = _decontaminate(cleaned, remaining, stages, timings)
        decisions.update(dropped)
    mark(meta, decisions, flagged)
    data_files = _write(cleaned, decisions, config, timings, len(meta))
    return CurationResult(
        output=Path(config.output),
        tally=Tally.of(meta),
        meta=meta,
        cluster_histogram={int(k): int(v) for k, v in pd.Series(cluster_sizes).value_counts().sort_index().items()},
        timings=timings,
        memory_estimate_bytes=estimate,
        data_files=data_files,
    )


def clean_dataset(config: CurationConfig, fmt: str):
    """Read, normalise, quality-filter and redact on the workers: the cleaned dataset, materialised."""
    return (
        read_dataset(config, fmt)
        .map_batches(
            clean_batch, fn_kwargs={"stages": config.stages}, batch_format="pandas", batch_size=config.batch_size
        )
        .materialize()
    )


def _read_and_clean(config: CurationConfig, fmt: str, timings: list[StageTiming]):
    """The cleaned dataset and its metadata (on the driver)."""
    started = time.monotonic()
    cleaned = clean_dataset(config, fmt)
    meta = cleaned.select_columns(META_COLUMNS).to_pandas()
    timings.append(StageTiming("read, normalise, quality, pii", time.monotonic() - started, len(meta)))
    print(f"[curation] {len(meta)} documents read and cleaned ({timings[-1].docs_per_s:.0f} docs/s)", flush=True)
    return cleaned, meta


def _exact_dedup(candidates: pd.DataFrame, timings: list[StageTiming]) -> Decisions:
    started = time.monotonic()
    decisions = exact_duplicates(candidates)
    timings.append(StageTiming("exact dedup", time.monotonic() - started, len(candidates)))
    print(f"[curation] exact dedup: {len(decisions)} duplicates", flush=True)
    return decisions


def _near_dedup(cleaned, remaining: pd.DataFrame, stages, timings: list[StageTiming]):
    """MinHash signatures on the workers, LSH and clusters here: (decisions, cluster sizes, memory estimate)."""
    near = stages.near_dedup
    params = near.params()
    estimate = params.memory_estimate_bytes(len(remaining))
    print(
        f"[curation] near dedup pre-flight: {len(remaining)} documents x {params.num_perm} permutations "
        f"-> about {estimate / 2**20:.1f} MiB in the driver (limit {near.max_memory_gb} GiB)",
        flush=True,
    )
    if estimate > near.max_memory_gb * 2**30:
        raise ConfigError(
            f"stages.near_dedup: about {estimate / 2**30:.1f} GiB needed, over max_memory_gb="
            f"{near.max_memory_gb}; raise it, lower bands x rows, or shard the input"
        )
    started = time.monotonic()
    keys = set(remaining["key"])
    signatures = (
        cleaned.filter(lambda row: row["key"] in keys)
        .map_batches(signature_batch, fn_kwargs={"params": params}, batch_format="pandas", batch_size=512)
        .to_pandas()
    )
    decisions, result = near_duplicates(remaining, signatures, params)
    timings.append(StageTiming("near dedup (MinHash + LSH)", time.monotonic() - started, len(signatures)))
    print(
        f"[curation] near dedup: {int((~result.keep).sum())} near duplicates in {len(result.cluster_sizes)} "
        f"clusters ({timings[-1].docs_per_s:.0f} docs/s)",
        flush=True,
    )
    return decisions, result.cluster_sizes, estimate


def _decontaminate(cleaned, remaining: pd.DataFrame, stages, timings: list[StageTiming]):
    """N-gram hits against the evaluation sets on the workers: (decisions, flagged keys)."""
    config = stages.decontaminate
    started = time.monotonic()
    # The index travels with the batch function: Ray Data passes an ObjectRef in fn_kwargs on as the reference.
    index = build_index(read_eval_sets(config.eval_sets), config.ngram)
    keys = set(remaining["key"])
    hits = (
        cleaned.filter(lambda row: row["key"] in keys)
        .map_batches(contamination_batch, fn_kwargs={"index": index, "n": config.ngram}, batch_format="pandas")
        .to_pandas()
    )
    decisions, flagged = contaminated(hits, config.ngram, config.mode)
    timings.append(StageTiming("decontaminate", time.monotonic() - started, len(hits)))
    print(f"[curation] decontamination: {len(decisions)} dropped, {len(flagged)} flagged", flush=True)
    return decisions, flagged


def _write(cleaned, decisions: Decisions, config: CurationConfig, timings: list[StageTiming], total: int) -> list[str]:
    """Kept documents as Parquet shards under data/, dropped ones under rejects/; the data files."""
    started = time.monotonic()
    final = cleaned.map_batches(apply_decisions, fn_kwargs={"decisions": decisions}, batch_format="pandas")
    files = write_output(final, config)
    timings.append(StageTiming("write", time.monotonic() - started, total))
    return files


def write_output(final, config: CurationConfig) -> list[str]:
    """Rows without a ``stage`` as Parquet shards under data/, the others under rejects/; the data files."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    kept = final.filter(lambda row: is_missing(row["stage"])).select_columns(["id", "text", "source", "words_out"])
    rejects = final.filter(lambda row: not is_missing(row["stage"])).select_columns(["id", "stage", "reason", "source"])
    for sub in ("data", "rejects"):
        for old in (out / sub).glob("*.parquet") if (out / sub).exists() else []:
            old.unlink()
    kept.repartition(config.shards).write_parquet(str(out / "data"))
    rejects.repartition(1).write_parquet(str(out / "rejects"))
    return sorted(str(p) for p in (out / "data").glob("*.parquet"))
