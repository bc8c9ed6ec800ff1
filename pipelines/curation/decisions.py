"""What the driver decides once it sees the whole corpus: exact duplicates, near duplicates,
contaminated documents — and marking those decisions on the corpus' metadata.

Pure functions over pandas frames, one row per document keyed by ``key`` (source and id):
the job computes the per-document columns on Ray (hashes, MinHash signatures, n-gram hits)
and brings the small ones here. A decision is ``key -> (stage, reason)``; the first
document seen of a duplicate set stays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.curation.decontaminate import contamination_reason
from pipelines.curation.dedup import MinHashParams, NearDupResult, find_near_duplicates

Decisions = dict[str, tuple[str, str]]


def exact_duplicates(candidates: pd.DataFrame) -> Decisions:
    """Documents whose ``exact_hash`` an earlier document has (columns: key, id, exact_hash)."""
    first = candidates.drop_duplicates("exact_hash", keep="first")
    first_id = candidates["exact_hash"].map(dict(zip(first["exact_hash"], first["id"], strict=True)))
    copies = first_id != candidates["id"]
    return {
        key: ("exact_dedup", f"exact duplicate of {original}")
        for key, original in zip(candidates["key"][copies], first_id[copies], strict=True)
    }


def near_duplicates(
    remaining: pd.DataFrame, signatures: pd.DataFrame, params: MinHashParams
) -> tuple[Decisions, NearDupResult]:
    """Near duplicates among ``remaining`` (key, id) from their MinHash ``signatures`` (key, signature bytes)."""
    if signatures.empty:  # every document was dropped earlier (Ray Data returns a frame without columns)
        return {}, NearDupResult(np.ones(0, dtype=bool), np.full(0, -1), [], 0, 0)
    order = {k: i for i, k in enumerate(remaining["key"])}
    signatures = signatures.sort_values("key", key=lambda s: s.map(order))
    matrix = np.frombuffer(b"".join(signatures["signature"]), dtype=np.uint32).reshape(len(signatures), -1)
    result = find_near_duplicates(matrix, params)
    ids = list(remaining.set_index("key").loc[list(signatures["key"]), "id"])
    decisions = {
        key: ("near_dedup", f"near duplicate of {ids[result.duplicate_of[i]]}")
        for i, key in enumerate(signatures["key"])
        if not result.keep[i]
    }
    return decisions, result


def contaminated(hits: pd.DataFrame, ngram: int, mode: str) -> tuple[Decisions, set[str]]:
    """From n-gram hits (key, contaminated_ngrams): documents to drop (``mode: drop``) or to flag."""
    if hits.empty:
        return {}, set()
    found = hits[hits["contaminated_ngrams"] > 0]
    if mode != "drop":
        return {}, set(found["key"])
    return {
        key: ("decontaminate", contamination_reason(count, ngram))
        for key, count in zip(found["key"], found["contaminated_ngrams"], strict=True)
    }, set()


def mark(meta: pd.DataFrame, decisions: Decisions, flagged: set[str]) -> pd.DataFrame:
    """Write the decisions into ``meta``'s stage and reason columns (every row of a key), and the flags."""
    if decisions:
        chosen = pd.DataFrame.from_dict(decisions, orient="index", columns=["stage", "reason"])
        rows = meta["key"].isin(chosen.index)
        keys = meta.loc[rows, "key"]
        meta.loc[rows, "stage"] = keys.map(chosen["stage"])
        meta.loc[rows, "reason"] = keys.map(chosen["reason"])
    meta["contaminated"] = meta["key"].isin(flagged)
    return meta
