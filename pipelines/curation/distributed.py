"""Deduplication and decontamination decided on the cluster (``decisions: distributed``).

The single-process path (``decisions.py``) brings every document's hash and signature
to the driver. Here the driver holds no per-document state, only counters, so a corpus
larger than its memory can be curated:

- every document gets an ``ordinal``, its position in the input, from the blocks' row
  counts (the driver sees one number per block);
- exact duplicates: a shuffle by content hash, the smallest ordinal of each hash stays;
- near duplicates: MinHash signatures in ``map_batches`` (the same code as the driver
  path), one row per (document, band) with the band's key, a shuffle by that key gives
  the candidate pairs (the bucket's first document, each other member), two shuffles by
  document bring both signatures to each pair for verification, and the connected components of
  the verified pairs are found with large-star / small-star rounds (``partitions.py``
  says why that algorithm);
- decontamination: the evaluation n-gram set is small and travels with the batch
  function to every worker (a broadcast); hits become decision rows;
- the decisions are a dataset of (ordinal, stage, reason), merged into the corpus by a
  shuffle on ordinal ranges, which keeps the input order.

A shuffle is a Ray Data ``groupby`` on a partition number computed from the key, with
each partition handled by one vectorised pandas call: a per-key ``map_groups`` would be
one Python call per document. Where a join would bring two datasets together, both are
mapped to one schema and shuffled together (``partitions.py``'s carriers): Ray Data's
joins run on a hash shuffle whose aggregator actors cost seconds per operation here and
could not be scheduled on a one-CPU Ray. The number of partitions follows the rows to shuffle
(``partition_rows`` per partition), so each worker's share stays bounded too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.curation import partitions as parts
from pipelines.curation.decontaminate import contamination_reason
from pipelines.curation.dedup import MinHashParams
from pipelines.curation.stages import contamination_batch, signature_batch

MAX_PARTITIONS = 512
MAX_ROUNDS = 64


def number_rows(ds):
    """``ds`` with an ``ordinal`` column (input order, from 0) and its row count."""
    import pyarrow as pa
    import ray
    from ray.data.block import BlockAccessor

    @ray.remote
    def number(block, start: int):
        table = BlockAccessor.for_block(block).to_arrow()
        ordinals = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
        return table.append_column("ordinal", ordinals)

    refs, start = [], 0
    for bundle in ds.iter_internal_ref_bundles():
        for entry in bundle.blocks:
            refs.append(number.remote(entry.ref, start))
            start += entry.metadata.num_rows
    return ray.data.from_arrow_refs(refs), start


def count_partitions(rows: int, per_partition: int) -> int:
    return max(1, min(MAX_PARTITIONS, math.ceil(rows / per_partition)))


def shuffle(ds, column: str, fn: Callable[..., pd.DataFrame], partitions: int, *, ranges: int = 0, **kwargs):
    """Rows with the same ``column`` value in one partition, ``fn(frame, **kwargs)`` per partition.

    Partitions are hashes of the value, or with ``ranges`` (the values' upper bound) contiguous
    ranges of it, which come out in order.
    """

    def tag(batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        values = batch[column].to_numpy(np.int64)
        batch["_part"] = values * partitions // ranges if ranges else parts.partition_of(values, partitions)
        return batch

    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        return fn(frame.drop(columns="_part"), **kwargs)

    tagged = ds.map_batches(tag, batch_format="pandas")
    return tagged.groupby("_part", num_partitions=partitions).map_groups(apply, batch_format="pandas")


def _hash_bucket(batch: pd.DataFrame) -> pd.DataFrame:
    batch = batch.copy()
    batch["bucket"] = [int(h[:15], 16) if h else 0 for h in batch["exact_hash"]]
    return batch


def exact_decisions(alive, per_partition: int, rows: int):
    """(ordinal, stage, reason) of the documents whose normalised text an earlier one has."""
    columns = alive.select_columns(["ordinal", "id", "exact_hash"]).map_batches(_hash_bucket, batch_format="pandas")
    return shuffle(columns, "bucket", parts.exact_partition, count_partitions(rows, per_partition))


def _signatures(batch: pd.DataFrame, params: MinHashParams) -> pd.DataFrame:
    signatures = signature_batch(batch, params)["signature"].to_numpy()
    return pd.DataFrame({"ordinal": batch["ordinal"].to_numpy(np.int64), "id": batch["id"], "signature": signatures})


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates(ignore_index=True)


def near_decisions(alive, skipped, params: MinHashParams, per_partition: int, rows: int):
    """(ordinal, stage, reason) of near duplicates among ``alive`` less ``skipped`` (decisions of an
    earlier stage), and the components' (node, root).

    Signatures are computed for every alive document; a document an earlier stage decided on
    is never a bucket's first (its original, earlier, shares all its bands), so leaving out
    its pairs after bucketing gives the pairs of the documents still in play.
    """
    signatures = alive.map_batches(_signatures, fn_kwargs={"params": params}, batch_format="pandas").materialize()
    band_parts = count_partitions(rows * params.bands // 16, per_partition)  # band rows are small
    bands = signatures.map_batches(parts.band_rows, fn_kwargs={"params": params}, batch_format="pandas")
    pairs = shuffle(bands, "bucket", parts.bucket_pairs, band_parts)
    sig_rows = signatures.map_batches(parts.signature_carriers, batch_format="pandas")
    carried = pairs.map_batches(parts.pair_carriers, batch_format="pandas")
    if skipped is not None:
        carried = carried.union(skipped.map_batches(parts.skip_carriers, batch_format="pandas"))
    node_parts = count_partitions(rows, per_partition)
    attached = shuffle(carried.union(sig_rows), "node", parts.attach, node_parts)
    edges = shuffle(attached.union(sig_rows), "node", parts.verify, node_parts, params=params).materialize()
    n_edges = edges.count()
    if n_edges <= per_partition:  # one worker holds them: components in one task
        roots = edges.repartition(1).map_batches(_components_in_one, batch_format="pandas")
    else:
        roots = connected_components(edges, per_partition, n_edges)
    roots = roots.materialize()
    ids = signatures.map_batches(parts.id_carriers, batch_format="pandas")
    root_rows = roots.map_batches(parts.root_carriers, batch_format="pandas")
    named = shuffle(ids.union(root_rows), "root", parts.name_roots, count_partitions(rows, per_partition))
    return named, roots


def _components_in_one(edges: pd.DataFrame) -> pd.DataFrame:
    return parts.components(edges)


def connected_components(edges, per_partition: int, n_edges: int):
    """(node, root) for every node of a verified pair; root is the component's smallest ordinal."""
    current = edges
    seen = _fingerprint(current)
    n = count_partitions(n_edges * 2, per_partition)
    for _ in range(MAX_ROUNDS):
        step = shuffle(current.map_batches(parts.directed, batch_format="pandas"), "u", parts.large_star, n)
        step = shuffle(step.map_batches(parts.directed, batch_format="pandas"), "u", parts.small_star, n)
        step = shuffle(step, "u", _dedupe, n).materialize()
        now = _fingerprint(step)
        current = step
        if now == seen:
            return current.rename_columns({"u": "node", "v": "root"})
        seen = now
    raise RuntimeError(f"near dedup: connected components did not converge in {MAX_ROUNDS} rounds")


def _fingerprint(edges) -> tuple[int, int]:
    """(edges, order-free checksum): equal in two rounds when the rounds changed nothing."""
    sums = edges.map_batches(
        lambda b: pd.DataFrame({"n": [len(b)], "fp": [parts.fingerprint(b)]}), batch_format="pandas"
    ).take_all()
    total = sum(int(row["n"]) for row in sums)
    checksum = sum(int(row["fp"]) for row in sums) % (1 << 64)
    return total, checksum


def cluster_histogram(roots) -> dict[int, int]:
    """{cluster size: clusters} from (node, root): counted per root on the workers, summed here by size."""
    if roots.count() == 0:
        return {}
    sizes = roots.groupby("root").count().map_batches(_sizes, batch_format="pandas")
    histogram: dict[int, int] = {}
    for row in sizes.groupby("size").count().take_all():
        histogram[int(row["size"])] = int(row["count()"])
    return dict(sorted(histogram.items()))


def _sizes(batch: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"size": batch["count()"].to_numpy(np.int64) + 1})  # the root itself


def contamination_decisions(remaining, index: frozenset[int], n: int, mode: str):
    """(ordinal, stage, reason, flagged) of documents sharing an n-gram with the (broadcast) evaluation index."""

    def hits(batch: pd.DataFrame) -> pd.DataFrame:
        counts = contamination_batch(batch, index, n)["contaminated_ngrams"].to_numpy(np.int64)
        found = counts > 0
        drop = mode == "drop"
        return pd.DataFrame(
            {
                "ordinal": batch["ordinal"].to_numpy(np.int64)[found],
                "stage": "decontaminate" if drop else None,
                "reason": [contamination_reason(c, n) if drop else None for c in counts[found]],
                "flagged": not drop,
            }
        )

    return remaining.map_batches(hits, batch_format="pandas")
