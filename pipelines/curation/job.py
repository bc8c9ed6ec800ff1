"""The curation job on Ray Data: read, clean in parallel, deduplicate, decontaminate, write.

Per-document stages run as ``map_batches`` on the workers. Deduplication needs a view
of the whole corpus, so the small columns (key, hash, MinHash signature) come back to
the driver, which decides what to drop (memory bounded by the pre-flight estimate) and
sends the decisions back to the workers as one object in the object store.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lathe.errors import ConfigError
from pipelines.curation.config import CurationConfig
from pipelines.curation.decisions import Decisions, contaminated, exact_duplicates, mark, near_duplicates
from pipelines.curation.decontaminate import build_index
from pipelines.curation.dedup import MinHashParams
from pipelines.curation.sources import content_id, file_record, jsonl_record
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
class CurationResult:
    output: Path
    total: int
    kept: int
    meta: pd.DataFrame
    cluster_sizes: list[int]
    timings: list[StageTiming] = field(default_factory=list)
    memory_estimate_bytes: int = 0
    data_files: list[str] = field(default_factory=list)

    def counts_by_stage(self) -> dict[str, int]:
        dropped = self.meta[self.meta["stage"].notna()]
        return {str(k): int(v) for k, v in dropped["stage"].value_counts().items()}

    def reasons(self) -> dict[str, int]:
        dropped = self.meta[self.meta["stage"].notna()]
        return {f"{s}: {r}": int(n) for (s, r), n in dropped.groupby(["stage", "reason"]).size().items()}

    def pii_counts(self) -> dict[str, int]:
        return {c.removeprefix("pii_"): int(self.meta[c].sum()) for c in PII_COLUMNS}


def _detect_format(config: CurationConfig) -> str:
    fmt = config.input.format
    path = Path(config.input.path)
    if fmt != "auto":
        return fmt
    if path.is_dir():
        return "files"
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    raise ConfigError(f"input.path: cannot tell the format of {path}; set input.format", param="input.format")


def preflight(config: CurationConfig) -> str:
    """Everything that can be checked before a worker starts."""
    path = Path(config.input.path)
    if not path.exists():
        raise ConfigError(f"input.path: {path} does not exist", param="input.path")
    fmt = _detect_format(config)
    for eval_set in config.stages.decontaminate.eval_sets if config.stages.decontaminate.enabled else []:
        if not Path(eval_set).exists():
            raise ConfigError(f"stages.decontaminate.eval_sets: {eval_set} does not exist")
    out = Path(config.output)
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").exists():
        raise ConfigError(f"output: {out} exists and is not a previous curation output; choose another")
    return fmt


def read_dataset(config: CurationConfig, fmt: str):
    import ray

    inp = config.input
    if fmt == "files":
        root = str(Path(inp.path).resolve())
        files = sorted(
            str(p)
            for p in Path(root).glob(inp.glob)
            if p.is_file() and p.suffix.lower() in {".txt", ".md", ".markdown", ".rst", ".text", ".html", ".htm"}
        )
        if inp.limit:
            files = files[: inp.limit]
        if not files:
            raise ConfigError(f"input.path: no text, Markdown, reST or HTML files under {root}")
        ds = ray.data.read_binary_files(files, include_paths=True)
        return ds.map(lambda row: file_record(row["path"], row["bytes"], root))
    if fmt == "jsonl":
        path = Path(inp.path)
        files = sorted(str(p) for p in (path.glob("*.jsonl") if path.is_dir() else [path]))
        ds = ray.data.read_binary_files(files, include_paths=True)

        def lines(row: dict) -> list[dict]:
            text = row["bytes"].decode("utf-8", errors="replace")
            return [
                jsonl_record(line, n + 1, row["path"], inp.text_field, inp.id_field)
                for n, line in enumerate(text.splitlines())
                if line.strip()
            ]

        ds = ds.flat_map(lines)
        return ds.limit(inp.limit) if inp.limit else ds
    ds = ray.data.read_parquet(inp.path)

    def from_parquet(batch: pd.DataFrame) -> pd.DataFrame:
        texts = batch[inp.text_field].astype(object) if inp.text_field in batch else pd.Series([None] * len(batch))
        ids = batch[inp.id_field].astype(str) if inp.id_field in batch else [content_id(str(t)) for t in texts]
        reasons = [None if isinstance(t, str) and t.strip() else "empty document" for t in texts]
        return pd.DataFrame(
            {
                "id": list(ids),
                "text": [t if isinstance(t, str) else "" for t in texts],
                "source": inp.path,
                "reason": reasons,
            }
        )

    ds = ds.map_batches(from_parquet, batch_format="pandas")
    return ds.limit(inp.limit) if inp.limit else ds


def run_curation(config: CurationConfig, *, ray_address: str | None = None) -> CurationResult:
    import ray

    fmt = preflight(config)
    stages = config.stages
    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # "the first one seen stays" must mean the same every run
    timings: list[StageTiming] = []

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
        total=len(meta),
        kept=int(meta["stage"].isna().sum()),
        meta=meta,
        cluster_sizes=cluster_sizes,
        timings=timings,
        memory_estimate_bytes=estimate,
        data_files=data_files,
    )


def _read_and_clean(config: CurationConfig, fmt: str, timings: list[StageTiming]):
    """Read, normalise, quality-filter and redact on the workers; the cleaned dataset and its metadata."""
    started = time.monotonic()
    raw = read_dataset(config, fmt)
    cleaned = raw.map_batches(
        clean_batch, fn_kwargs={"stages": config.stages}, batch_format="pandas", batch_size=config.batch_size
    ).materialize()
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
    params = MinHashParams(
        ngram=near.ngram, bands=near.bands, rows=near.rows, threshold=near.threshold, unit=near.unit, seed=near.seed
    )
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
    index = build_index(_read_eval_sets(config.eval_sets), config.ngram)
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
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    final = cleaned.map_batches(apply_decisions, fn_kwargs={"decisions": decisions}, batch_format="pandas")
    kept = final.filter(lambda row: is_missing(row["stage"])).select_columns(["id", "text", "source", "words_out"])
    rejects = final.filter(lambda row: not is_missing(row["stage"])).select_columns(["id", "stage", "reason", "source"])
    for sub in ("data", "rejects"):
        for old in (out / sub).glob("*.parquet") if (out / sub).exists() else []:
            old.unlink()
    kept.repartition(config.shards).write_parquet(str(out / "data"))
    rejects.repartition(1).write_parquet(str(out / "rejects"))
    timings.append(StageTiming("write", time.monotonic() - started, total))
    return sorted(str(p) for p in (out / "data").glob("*.parquet"))


def _read_eval_sets(paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        p = Path(path)
        if p.suffix in (".jsonl", ".json"):
            for line in p.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    texts.append(" ".join(str(v) for v in row.values() if isinstance(v, str)))
        else:
            texts.append(p.read_text())
    return texts
