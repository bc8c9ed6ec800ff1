"""The per-partition steps of the distributed deduplication, without Ray: the same answers as
the single-process code, whatever way the rows are split into partitions."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from pipelines.curation import partitions as parts
from pipelines.curation.dedup import MinHashParams, UnionFind, find_near_duplicates, signatures_for
from tests.support.corpus import article
from tests.unit.curation.small_corpus import edited


def split(frame: pd.DataFrame, column: str, n: int) -> list[pd.DataFrame]:
    """The rows of ``frame`` as ``n`` partitions by ``column``, the way the job's shuffle splits them."""
    part = parts.partition_of(frame[column].to_numpy(np.int64), n)
    return [frame[part == i].reset_index(drop=True) for i in range(n)]


def in_partitions(frame: pd.DataFrame, column: str, n: int, fn, **kwargs) -> pd.DataFrame:
    return pd.concat([fn(p, **kwargs) for p in split(frame, column, n)], ignore_index=True)


def random_graph(rng: random.Random, nodes: int, edges: int) -> pd.DataFrame:
    pairs = {tuple(sorted(rng.sample(range(nodes), 2))) for _ in range(edges)}
    return pd.DataFrame(sorted(pairs), columns=["u", "v"]).astype(np.int64)


def union_find_roots(edges: pd.DataFrame) -> dict[int, int]:
    nodes = sorted(set(edges["u"]) | set(edges["v"]))
    uf = UnionFind(max(nodes) + 1)
    for u, v in zip(edges["u"], edges["v"], strict=True):
        uf.union(int(u), int(v))
    return {n: uf.find(n) for n in nodes if uf.find(n) != n}


@pytest.mark.parametrize("seed", range(6))
def test_star_rounds_find_the_components_union_find_finds(seed):
    rng = random.Random(seed)
    edges = random_graph(rng, nodes=rng.choice([8, 60, 400]), edges=rng.choice([5, 80, 300]))
    roots = parts.components(edges)
    assert dict(zip(roots["node"], roots["root"], strict=True)) == union_find_roots(edges)


@pytest.mark.parametrize("n", [1, 4, 16])
def test_star_rounds_over_partitions_equal_one_frame(n):
    """Each step grouped by node in n partitions (the distributed rounds) ends where one frame does."""
    edges = random_graph(random.Random(5), nodes=300, edges=260)
    current = edges
    for _ in range(64):
        step = in_partitions(parts.directed(current), "u", n, parts.large_star)
        step = in_partitions(parts.directed(step), "u", n, parts.small_star).drop_duplicates(ignore_index=True)
        if parts.fingerprint(step) == parts.fingerprint(current) and len(step) == len(current):
            break
        current = step
    assert dict(zip(current["u"], current["v"], strict=True)) == union_find_roots(edges)


def corpus() -> list[str]:
    rng = random.Random(2)
    originals = [article(rng, 90) for _ in range(60)]
    copies = [edited(originals[i], rng.choice([15, 25, 40])) for i in range(0, 60, 4)]
    chained = [edited(copies[0], 30), originals[9], originals[9].upper()]
    return originals + copies + chained


@pytest.mark.parametrize("n", [1, 4, 16])
def test_pairs_verified_in_partitions_give_the_single_process_clusters(n):
    params = MinHashParams()
    texts = corpus()
    matrix = signatures_for(texts, params)
    expected = find_near_duplicates(matrix, params)
    signatures = pd.DataFrame({"ordinal": np.arange(len(texts)), "signature": [row.tobytes() for row in matrix]})
    bands = parts.band_rows(signatures, params)
    pairs = in_partitions(bands, "bucket", n, parts.bucket_pairs)
    carried = pd.concat([parts.pair_carriers(pairs), parts.signature_carriers(signatures)], ignore_index=True)
    attached = in_partitions(carried, "node", n, parts.attach)
    rows = pd.concat([attached, parts.signature_carriers(signatures)], ignore_index=True)
    edges = in_partitions(rows, "node", n, parts.verify, params=params)
    roots = parts.components(edges)
    dropped = dict(zip(roots["node"], roots["root"], strict=True))
    assert dropped == {i: int(expected.duplicate_of[i]) for i in np.flatnonzero(~expected.keep)}
    assert len(dropped) >= 16  # the planted copies were found


def test_pairs_of_a_decided_document_are_left_out():
    params = MinHashParams()
    texts = corpus()
    matrix = signatures_for(texts, params)
    signatures = pd.DataFrame({"ordinal": np.arange(len(texts)), "signature": [row.tobytes() for row in matrix]})
    pairs = parts.bucket_pairs(parts.band_rows(signatures, params))
    exact_copy = len(texts) - 1  # originals[9] upper-cased: the exact stage drops it
    assert exact_copy in set(pairs["v"])
    skipped = parts.skip_carriers(pd.DataFrame({"ordinal": [exact_copy]}))
    carried = pd.concat([parts.pair_carriers(pairs), skipped, parts.signature_carriers(signatures)])
    attached = parts.attach(carried.reset_index(drop=True))
    assert exact_copy not in set(attached["other"]) and len(attached) > 0


def test_exact_copies_keep_the_first_in_any_partitioning():
    frame = pd.DataFrame(
        {"ordinal": [0, 1, 2, 3, 4, 5], "id": list("abcdef"), "exact_hash": ["x", "y", "x", "z", "y", "x"]}
    )
    frame["bucket"] = [hash(h) % 97 for h in frame["exact_hash"]]
    for n in (1, 4, 16):
        found = in_partitions(frame.sample(frac=1, random_state=n), "bucket", n, parts.exact_partition)
        assert dict(zip(found["ordinal"], found["reason"], strict=True)) == {
            2: "exact duplicate of a",
            4: "exact duplicate of b",
            5: "exact duplicate of a",
        }


def test_one_decision_per_document_the_earliest_stage():
    decisions = pd.DataFrame(
        {
            "ordinal": [7, 7, 3, 9, 9],
            "stage": ["decontaminate", "near_dedup", None, "exact_dedup", None],
            "reason": ["n-grams", "near duplicate of a", None, "exact duplicate of b", None],
            "flagged": [False, False, True, False, True],
        }
    )
    resolved = parts.resolve(decisions).set_index("ordinal")
    assert resolved.loc[7, "stage"] == "near_dedup" and resolved.loc[9, "stage"] == "exact_dedup"
    assert not resolved.loc[9, "flagged"] and resolved.loc[3, "flagged"]
