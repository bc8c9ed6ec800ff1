"""Collections in Qdrant Edge (``qdrant-edge-py``): Qdrant's engine in process, no server.

The local platform's store. Each collection is an Edge shard, a folder under
``<store>/edge/<collection>``: an HNSW index for the dense vectors, an inverted index
for the sparse ones (IDF from the shard's own statistics), payloads, and a write-ahead
log that a crash replays on the next open. Same vendor, vectors, payloads and filters
as the cluster's Qdrant server, so one ``VectorStore`` drives both
(``services/rag/store_server.py`` is the other backend).

The folder is one process's: the store holds ``<store>/.lock`` for as long as it is
open, and another process that finds it taken gets ``StoreLockedError``.

Migration: a folder that still holds a collection of qdrant-client's local mode (the
store before Edge) is re-indexed into Edge on first open, vectors and payloads as they
were; the old files move to ``<store>/local-mode-backup``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lathe.telemetry import log_fields
from services.rag.store_types import (
    DENSE,
    SPARSE,
    StoredChunk,
    StoreLockedError,
    chunk_metadata,
    sparse_text,
)

log = logging.getLogger(__name__)

_SCROLL = 1024


class EdgeCollections:
    """Every collection of one local store folder; open while the store holds its lock."""

    def __init__(self, path: Path, sparse: Any) -> None:
        self.path = path
        self.root = path / "edge"
        self.sparse = sparse
        self._lock = _take_lock(path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _migrate_local_mode(path, self)
            self._shards: dict[str, Any] = {}
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                self._shards[folder.name] = self._load(folder)
        except BaseException:
            self.close()
            raise

    def _load(self, folder: Path) -> Any:
        import qdrant_edge as qe

        return qe.EdgeShard.load(str(folder))

    # -- collections ------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._shards)

    def exists(self, collection: str) -> bool:
        return collection in self._shards

    def dimension(self, collection: str) -> int | None:
        import qdrant_edge as qe

        shard = self._shards[collection]
        points = shard.scroll(qe.ScrollRequest(limit=1, with_payload=False, with_vector=[DENSE]))[0]
        return len(points[0].vector[DENSE]) if points else None

    def create(self, collection: str, dimension: int) -> None:
        import qdrant_edge as qe

        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        folder = self.root / collection
        shutil.rmtree(folder, ignore_errors=True)  # a create that a crash cut short
        self._shards[collection] = qe.EdgeShard.create(str(folder), config)

    def drop(self, collection: str) -> None:
        self._shards.pop(collection).close()
        shutil.rmtree(self.root / collection)

    def count(self, collection: str, filters: dict[str, Any] | None = None) -> int:
        import qdrant_edge as qe

        return self._shards[collection].count(qe.CountRequest(exact=True, filter=edge_filter(filters)))

    def payloads(self, collection: str, filters: dict[str, Any] | None, keys: list[str]) -> Iterator[dict[str, Any]]:
        import qdrant_edge as qe

        shard, offset = self._shards[collection], None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=_SCROLL, filter=edge_filter(filters), with_payload=keys)
            points, offset = shard.scroll(request)
            for point in points:
                yield dict(point.payload or {})
            if offset is None:
                return

    # -- writes -----------------------------------------------------------------------
    def upsert(
        self, collection: str, ids: list[str], records: list[dict[str, Any]], vectors: list[list[float]]
    ) -> None:
        import qdrant_edge as qe

        indices, values = self.sparse.encode_documents([sparse_text(r) for r in records])
        points = [
            qe.Point(
                point_id,
                {DENSE: list(vector), SPARSE: qe.SparseVector(list(ix), list(vs))},
                {"text": record["text"], **chunk_metadata(record)},
            )
            for point_id, record, vector, ix, vs in zip(ids, records, vectors, indices, values, strict=True)
        ]
        shard = self._shards[collection]
        for start in range(0, len(points), 256):
            shard.update(qe.UpdateOperation.upsert_points(points[start : start + 256]))
        shard.flush()

    def delete(self, collection: str, filters: dict[str, Any], keep_hash: str | None = None) -> None:
        import qdrant_edge as qe

        condition = edge_filter(filters)
        if keep_hash is not None:
            keep = qe.FieldCondition("doc_hash", match=qe.MatchValue(keep_hash))
            condition = qe.Filter(must=condition.must, must_not=[keep])
        shard = self._shards[collection]
        shard.update(qe.UpdateOperation.delete_points_by_filter(condition))
        shard.flush()

    # -- reads ------------------------------------------------------------------------
    def search(
        self, collection: str, mode: str, query: str, vector: list[float] | None, limit: int, filters: dict
    ) -> list[StoredChunk]:
        import qdrant_edge as qe

        if mode == "sparse":
            (ix,), (vs,) = self.sparse.encode_queries([query])
            if not ix:
                return []
            nearest = qe.Query.Nearest(qe.SparseVector(list(ix), list(vs)), using=SPARSE)
        else:
            nearest = qe.Query.Nearest(list(vector or []), using=DENSE)
        request = qe.QueryRequest(limit=limit, query=nearest, filter=edge_filter(filters), with_payload=True)
        hits = []
        for point in self._shards[collection].query(request):
            payload = dict(point.payload or {})
            hits.append(StoredChunk(str(point.id), str(payload.pop("text", "")), payload, float(point.score)))
        return hits

    def optimize(self, collection: str) -> None:
        """Build the HNSW and sparse indexes of what was written (the engine decides what is due)."""
        self._shards[collection].optimize()

    def vectors(self, collection: str, ids: list[str]) -> dict[str, list[float]]:
        records = self._shards[collection].retrieve(ids, with_payload=False, with_vector=[DENSE])
        return {str(r.id): list(r.vector[DENSE]) for r in records}

    def close(self) -> None:
        for shard in getattr(self, "_shards", {}).values():
            shard.close()
        self._shards = {}
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None


def edge_filter(filters: dict[str, Any] | None) -> Any:
    """Equality filters; a list value matches any of its items; a range (``date``) its bounds."""
    import qdrant_edge as qe

    if not filters:
        return None
    must = []
    for key, value in filters.items():
        if hasattr(value, "gte"):  # schemas.DateRange
            bounds = {name: _iso(getattr(value, name)) for name in ("gte", "gt", "lte", "lt")}
            must.append(qe.FieldCondition(key, range=qe.RangeDateTime(**bounds)))
        elif isinstance(value, list):
            must.append(qe.FieldCondition(key, match=qe.MatchAny(list(value))))
        else:
            must.append(qe.FieldCondition(key, match=qe.MatchValue(value)))
    return qe.Filter(must=must)


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()


# -- the folder's lock ----------------------------------------------------------------
def _locked(path: Path, reason: str) -> StoreLockedError:
    lock_file = path / ".lock"
    return StoreLockedError(
        f"the vector store at {path} is in use by another process (it holds {lock_file}): {reason}",
        hint="stop the other process (another RAG service, or a program with that folder open), "
        "or point LATHE_RAG_QDRANT_PATH elsewhere; the service opens the store once it is free",
    )


def _take_lock(path: Path) -> Any:
    import portalocker

    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / ".lock", "a+")  # noqa: SIM115 - held until close()
    try:
        portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
    except portalocker.exceptions.LockException:
        handle.close()
        raise _locked(path, "its lock is taken") from None
    return handle


def _release_lock(handle: Any) -> None:
    import portalocker

    portalocker.unlock(handle)
    handle.close()


# -- migration from qdrant-client's local mode -------------------------------------------
def _migrate_local_mode(path: Path, edge: EdgeCollections) -> None:
    """Re-index the collections a local-mode folder holds into Edge, then move the old files aside."""
    old = path / "collection"
    if not (path / "meta.json").exists() or not old.is_dir():
        return
    from qdrant_client import QdrantClient

    _release_lock(edge._lock)  # local mode takes the same lock file while it reads
    edge._lock = None
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as exc:
        raise _locked(path, str(exc)) from None
    try:
        edge._shards = {}
        moved = {item.name: _copy_collection(client, item.name, edge) for item in client.get_collections().collections}
    finally:
        client.close()
        for shard in edge._shards.values():
            shard.close()
        edge._lock = _take_lock(path)
    backup = path / "local-mode-backup"
    backup.mkdir(exist_ok=True)
    for name in ("collection", "meta.json"):
        shutil.move(str(path / name), str(backup / name))
    log.warning(
        "re-indexed the vector store's local-mode collections into Qdrant Edge",
        extra=log_fields(path=str(path), chunks=json.dumps(moved), backup=str(backup)),
    )


def _copy_collection(client: Any, collection: str, edge: EdgeCollections) -> int:
    from services.rag.store_types import legacy_text

    info = client.get_collection(collection).config.params.vectors
    edge.create(collection, info[DENSE].size)
    offset, copied = None, 0
    while True:
        points, offset = client.scroll(collection, limit=256, offset=offset, with_payload=True, with_vectors=[DENSE])
        records = [{"text": legacy_text(p.payload or {}), **(p.payload or {})} for p in points]
        ids = [str(p.id) for p in points]
        if points:
            edge.upsert(collection, ids, records, [p.vector[DENSE] for p in points])
        copied += len(points)
        if offset is None:
            return copied
