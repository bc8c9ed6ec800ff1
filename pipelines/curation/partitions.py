"""What each partition of the distributed deduplication computes: pandas in, pandas out, Ray-free.

The distributed job (``distributed.py``) shuffles rows so that everything a decision needs
lands in one partition, then calls one of these functions per partition. Every function
is vectorised over its partition and depends only on the rows it receives, so the result
is the same whatever the partitioning: the tests run them on 1, 4 and 16 partitions.

Documents are named by their ``ordinal``, their position in the input; "the first one
seen stays" means the smallest ordinal stays, exactly as the single-process decisions
(``decisions.py``) keep the first row of the driver's frame.

Near-duplicate clusters are connected components of the verified pairs. They are found
with the alternating large-star / small-star steps of Kiveris et al., "Connected
Components in MapReduce and Beyond" (SoCC 2014): each step is one shuffle of the edge
list grouped by a node, needs no join with a label table, keeps every node's state in its
own partition, and converges in O(log n) rounds. At the end every non-root node has one
edge to its component's smallest ordinal, which is the document that stays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.curation.dedup import MinHashParams

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)
EDGE_COLUMNS = ["u", "v"]


def partition_of(values: np.ndarray, partitions: int) -> np.ndarray:
    """A stable partition number for int64 values (the same on every worker and every run)."""
    with np.errstate(over="ignore"):
        mixed = values.astype(np.uint64) * _MIX
    return ((mixed >> np.uint64(33)) % np.uint64(partitions)).astype(np.int64)


def exact_partition(rows: pd.DataFrame) -> pd.DataFrame:
    """Copies of an earlier document's ``exact_hash``: (ordinal, stage, reason) per copy."""
    rows = rows.sort_values(["exact_hash", "ordinal"], kind="stable")
    first_id = rows.groupby("exact_hash", sort=False)["id"].transform("first")
    copies = rows["exact_hash"].duplicated(keep="first")
    return pd.DataFrame(
        {
            "ordinal": rows["ordinal"][copies].to_numpy(np.int64),
            "stage": "exact_dedup",
            "reason": ("exact duplicate of " + first_id[copies]).to_numpy(object),
        }
    )


def band_rows(signatures: pd.DataFrame, params: MinHashParams) -> pd.DataFrame:
    """One row per (document, band): the band's key as two independent 64-bit hashes of the band
    number and its rows (a collision of both is ~2^-128, so buckets are the driver path's)."""
    if signatures.empty:
        return pd.DataFrame({"ordinal": np.zeros(0, np.int64), "bucket": np.zeros(0, np.int64), "check": []})
    matrix = np.frombuffer(b"".join(signatures["signature"]), dtype=np.uint32).reshape(len(signatures), -1)
    ordinals = signatures["ordinal"].to_numpy(np.int64)
    buckets, checks = [], []
    with np.errstate(over="ignore"):
        for band in range(params.bands):
            columns = matrix[:, band * params.rows : (band + 1) * params.rows].astype(np.uint64).T
            digest = np.full(len(matrix), np.uint64(band + 1) * _MIX, dtype=np.uint64)
            check = np.full(len(matrix), np.uint64(band + 1) * _MIX2, dtype=np.uint64)
            for column in columns:
                digest = _mix(digest ^ column, _MIX)
                check = _mix(check ^ column, _MIX2)
            buckets.append(digest.view(np.int64))
            checks.append(check.view(np.int64))
    return pd.DataFrame(
        {"ordinal": np.tile(ordinals, params.bands), "bucket": np.concatenate(buckets), "check": np.concatenate(checks)}
    )


def _mix(values: np.ndarray, multiplier: np.uint64) -> np.ndarray:
    """One round of a 64-bit multiply-xorshift mixer (splitmix-style)."""
    values = values * multiplier
    return values ^ (values >> np.uint64(29))


def bucket_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """Candidate pairs from shared band keys: (the bucket's first document, each other member)."""
    if rows.empty:
        return pd.DataFrame({"u": np.zeros(0, np.int64), "v": np.zeros(0, np.int64)})
    shared = rows[rows.duplicated(["bucket", "check"], keep=False)]
    first = shared.groupby(["bucket", "check"], sort=False)["ordinal"].transform("min")
    pairs = pd.DataFrame({"u": first.to_numpy(np.int64), "v": shared["ordinal"].to_numpy(np.int64)})
    return pairs[pairs["u"] != pairs["v"]].drop_duplicates(ignore_index=True)


def _carrier(node, other, kind: int, sig) -> pd.DataFrame:
    frame = pd.DataFrame({"node": np.asarray(node, np.int64), "other": np.asarray(other, np.int64)})
    frame["kind"] = np.int8(kind)
    frame["sig"] = pd.Series(list(sig), dtype=object) if not isinstance(sig, bytes) else sig
    return frame


def signature_carriers(signatures: pd.DataFrame) -> pd.DataFrame:
    """Signature rows (kind 0) of the frame shuffled by ``node``: a partition holds a node's signature,
    its pairs (kind 1) and whether an earlier stage decided on it (kind 2), without a join."""
    return _carrier(signatures["ordinal"], np.full(len(signatures), -1), 0, signatures["signature"])


def pair_carriers(pairs: pd.DataFrame) -> pd.DataFrame:
    """Candidate pairs keyed by their second document (kind 1)."""
    return _carrier(pairs["v"], pairs["u"], 1, b"")


def skip_carriers(decided: pd.DataFrame) -> pd.DataFrame:
    """Documents an earlier stage decided on (kind 2): their pairs are left out."""
    return _carrier(decided["ordinal"], np.full(len(decided), -1), 2, b"")


def attach(rows: pd.DataFrame) -> pd.DataFrame:
    """Pairs whose ``node`` is still in play, with its signature, re-keyed by the pair's other end."""
    skipped = set(rows["node"][rows["kind"] == 2])
    signature = dict(zip(rows["node"][rows["kind"] == 0], rows["sig"][rows["kind"] == 0], strict=True))
    pairs = rows[(rows["kind"] == 1) & ~rows["node"].isin(skipped)].drop_duplicates(["node", "other"])
    return pd.DataFrame(
        {
            "node": pairs["other"].to_numpy(np.int64),
            "other": pairs["node"].to_numpy(np.int64),
            "kind": np.int8(1),
            "sig": [signature[n] for n in pairs["node"]],
        }
    )


def verify(rows: pd.DataFrame, params: MinHashParams) -> pd.DataFrame:
    """Edges (u, v) of the pairs whose signatures agree on at least ``threshold`` of the permutations.

    ``rows``: a node's signature row (kind 0) and its pairs (kind 1) carrying the other end's signature.
    """
    signature = dict(zip(rows["node"][rows["kind"] == 0], rows["sig"][rows["kind"] == 0], strict=True))
    pairs = rows[rows["kind"] == 1]
    if pairs.empty:
        return pd.DataFrame({"u": np.zeros(0, np.int64), "v": np.zeros(0, np.int64)})
    left = np.frombuffer(b"".join(signature[n] for n in pairs["node"]), dtype=np.uint32).reshape(len(pairs), -1)
    right = np.frombuffer(b"".join(pairs["sig"]), dtype=np.uint32).reshape(len(pairs), -1)
    keep = np.count_nonzero(left == right, axis=1) / params.num_perm >= params.threshold
    return pd.DataFrame({"u": pairs["node"].to_numpy(np.int64)[keep], "v": pairs["other"].to_numpy(np.int64)[keep]})


def id_carriers(signatures: pd.DataFrame) -> pd.DataFrame:
    """Each document's id, keyed by its ordinal as a possible root (``node`` -1 marks an id row)."""
    return pd.DataFrame(
        {"root": signatures["ordinal"].to_numpy(np.int64), "node": np.int64(-1), "id": signatures["id"]}
    )


def root_carriers(roots: pd.DataFrame) -> pd.DataFrame:
    """Component members keyed by their root, to meet the root's id row."""
    return pd.DataFrame(
        {"root": roots["root"].to_numpy(np.int64), "node": roots["node"].to_numpy(np.int64), "id": [""] * len(roots)}
    )


def name_roots(rows: pd.DataFrame) -> pd.DataFrame:
    """Near-duplicate decisions (ordinal, stage, reason) naming the document each one duplicates."""
    is_id = rows["node"] == -1
    ids = dict(zip(rows["root"][is_id], rows["id"][is_id], strict=True))
    members = rows[~is_id]
    return pd.DataFrame(
        {
            "ordinal": members["node"].to_numpy(np.int64),
            "stage": "near_dedup",
            "reason": [f"near duplicate of {ids[r]}" for r in members["root"]],
        }
    )


STAGE_ORDER = {"exact_dedup": 0, "near_dedup": 1, "decontaminate": 2}


def resolve(decisions: pd.DataFrame) -> pd.DataFrame:
    """One decision per document: the earliest stage's (a flag only for a document no stage dropped)."""
    order = decisions["stage"].map(STAGE_ORDER).fillna(len(STAGE_ORDER))
    ranked = decisions.assign(_order=order).sort_values(["ordinal", "_order"], kind="stable")
    return ranked.drop_duplicates("ordinal").drop(columns="_order").reset_index(drop=True)


def _both_ways(edges: pd.DataFrame) -> pd.DataFrame:
    flipped = edges.rename(columns={"u": "v", "v": "u"})
    return pd.concat([edges, flipped], ignore_index=True).drop_duplicates(ignore_index=True)


def large_star(edges: pd.DataFrame) -> pd.DataFrame:
    """Each node's larger neighbours are linked to the smallest of its closed neighbourhood.

    ``edges`` holds every edge of the nodes in this partition, in both directions (u is the node).
    """
    if edges.empty:
        return edges[EDGE_COLUMNS]
    smallest = np.minimum(edges.groupby("u", sort=False)["v"].transform("min"), edges["u"])
    larger = edges["v"] > edges["u"]
    out = pd.DataFrame({"u": edges["v"][larger].to_numpy(np.int64), "v": smallest[larger].to_numpy(np.int64)})
    return out[out["u"] != out["v"]].drop_duplicates(ignore_index=True)


def small_star(edges: pd.DataFrame) -> pd.DataFrame:
    """Each node and its smaller neighbours are linked to the smallest of them.

    ``edges`` holds every edge of the nodes in this partition, in both directions (u is the node).
    """
    smaller = edges[edges["v"] < edges["u"]]
    if smaller.empty:
        return edges.iloc[0:0][EDGE_COLUMNS]
    smallest = smaller.groupby("u", sort=False)["v"].transform("min").to_numpy(np.int64)
    nodes = smaller["u"].to_numpy(np.int64)
    members = smaller["v"].to_numpy(np.int64)
    out = pd.DataFrame({"u": np.concatenate([members, nodes]), "v": np.concatenate([smallest, smallest])})
    return out[out["u"] != out["v"]].drop_duplicates(ignore_index=True)


def directed(edges: pd.DataFrame) -> pd.DataFrame:
    """An undirected edge list as both directions, for the star steps' shuffle by node."""
    return _both_ways(edges[EDGE_COLUMNS])


def components(edges: pd.DataFrame, max_rounds: int = 64) -> pd.DataFrame:
    """Connected components on one frame: (node, root) with root the component's smallest node.

    The distributed job resolves edges that fit one partition with this, in one task; more
    edges run the same steps with a shuffle between them.
    """
    current = edges[EDGE_COLUMNS].drop_duplicates(ignore_index=True)
    for _ in range(max_rounds):
        after = small_star(directed(large_star(directed(current))))
        if _same(after, current):
            break
        current = after
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    return current.rename(columns={"u": "node", "v": "root"})


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    key = ["u", "v"]
    return a.sort_values(key, ignore_index=True).equals(b.sort_values(key, ignore_index=True))


def fingerprint(edges: pd.DataFrame) -> int:
    """An order-free checksum of an edge list (sum of mixed pairs, mod 2^64): rounds compare these."""
    if edges.empty:
        return 0
    with np.errstate(over="ignore"):
        mixed = (edges["u"].to_numpy(np.uint64) * _MIX) ^ (edges["v"].to_numpy(np.uint64) * _MIX2)
        return int(mixed.sum(dtype=np.uint64))
