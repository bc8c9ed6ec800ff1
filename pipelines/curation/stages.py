"""The per-document stages as batch functions (pandas in, pandas out), Ray-free.

A row carries ``stage`` and ``reason`` once a stage drops it; later stages skip it, and
the job writes it to the rejects file. Counts a report needs (words, PII by kind) ride
along as columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lathe.pii import KINDS, redact
from pipelines.curation.config import StagesConfig
from pipelines.curation.decontaminate import contamination
from pipelines.curation.dedup import MinHashParams, exact_hash, minhash_signature
from pipelines.curation.normalise import compile_boilerplate, normalise_text
from pipelines.curation.quality import QualityThresholds, check_quality, words_of

PII_COLUMNS = [f"pii_{kind}" for kind in KINDS]


def is_missing(value: object) -> bool:
    """None, NaN or pandas' NA: Arrow and pandas each spell "no value" their own way."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def thresholds(stages: StagesConfig) -> QualityThresholds:
    q = stages.quality.model_dump(exclude={"enabled"})
    return QualityThresholds(**q)


def clean_batch(batch: pd.DataFrame, stages: StagesConfig) -> pd.DataFrame:
    """Read rejects, normalise, quality-filter and redact one batch."""
    boilerplate = (
        compile_boilerplate(stages.normalise.boilerplate_patterns) if stages.normalise.remove_boilerplate else []
    )
    limits = thresholds(stages)
    names = ("key", "id", "text", "source", "stage", "reason", "words_in", "words_out", "exact_hash")
    out: dict[str, list] = {name: [] for name in names}
    pii = {col: [] for col in PII_COLUMNS}
    for doc_id, text, source, read_reason in zip(
        batch["id"], batch["text"], batch["source"], batch["reason"], strict=True
    ):
        stage = reason = None
        counts: dict[str, int] = {}
        words_in = len(words_of(text)) if text else 0
        if isinstance(read_reason, str) and read_reason:
            stage, reason = "read", read_reason
        if stage is None and stages.normalise.enabled:
            text = normalise_text(
                text,
                unicode_form=stages.normalise.unicode_form,
                remove_control=stages.normalise.remove_control,
                collapse_whitespace=stages.normalise.collapse_whitespace,
                boilerplate=boilerplate,
            )
            if not text:
                stage, reason = "normalise", "empty after normalisation"
        if stage is None and stages.quality.enabled:
            broken = check_quality(text, limits)
            if broken:
                stage, reason = "quality", broken
        if stage is None and stages.pii.enabled:
            text, found = redact(text, stages.pii.kinds)
            counts = dict(found)
        out["key"].append(f"{source}\x1f{doc_id}")
        out["id"].append(str(doc_id))
        out["text"].append(text)
        out["source"].append(source)
        out["stage"].append(stage)
        out["reason"].append(reason)
        out["words_in"].append(words_in)
        out["words_out"].append(len(words_of(text)) if stage is None else 0)
        out["exact_hash"].append(exact_hash(text) if stage is None else "")
        for kind in KINDS:
            pii[f"pii_{kind}"].append(counts.get(kind, 0))
    return pd.DataFrame({**out, **pii})


def signature_batch(batch: pd.DataFrame, params: MinHashParams) -> pd.DataFrame:
    a, b = params.coefficients()
    signatures = [minhash_signature(t, params, a, b).tobytes() for t in batch["text"]]
    return pd.DataFrame({"key": batch["key"], "signature": signatures})


def contamination_batch(batch: pd.DataFrame, index: frozenset[int], n: int) -> pd.DataFrame:
    hits = [contamination(t, index, n) for t in batch["text"]]
    return pd.DataFrame({"key": batch["key"], "contaminated_ngrams": np.asarray(hits, dtype=np.int64)})


def apply_decisions(batch: pd.DataFrame, decisions: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Mark rows the driver decided to drop (duplicates, contamination); a row a cleaning stage
    already dropped keeps that stage. One dict lookup per row, the marking vectorised."""
    batch = batch.copy()
    decided = np.fromiter((key in decisions for key in batch["key"]), dtype=bool, count=len(batch))
    marked = decided & batch["stage"].isna().to_numpy()
    if marked.any():
        chosen = [decisions[key] for key in batch["key"].to_numpy()[marked]]
        batch["stage"] = batch["stage"].astype(object)
        batch["reason"] = batch["reason"].astype(object)
        batch.loc[marked, "stage"] = [stage for stage, _ in chosen]
        batch.loc[marked, "reason"] = [reason for _, reason in chosen]
    return batch
