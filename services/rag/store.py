"""Collections of chunks in Qdrant: the embedded engine locally, a Qdrant server in the cluster.

Two backends behind one interface, chosen by ``VectorStore.open``:
``EdgeCollections`` (Qdrant Edge in process, a folder the RAG service owns;
``services/rag/store_edge.py``) and ``ServerCollections`` (``qdrant-client`` and
LlamaIndex's Qdrant store; ``services/rag/store_server.py``). Each chunk is a point
with a dense vector (MiniLM), a sparse vector (BM25 weights, IDF applied by Qdrant)
and its metadata: document id, content hash, source, title, section, page, chunk
number and date.

Replacing a document writes its new chunks first and then deletes the chunks of
any other hash, so a crash never loses the old version before the new one is whole.
Every chunk records how many chunks its version has and when it was written, which
is what recovery reads: a version with fewer chunks than it should have was cut off
mid-write. Opening a local folder repairs what a crash left (each document keeps its
newest whole version, nothing else), and an ingest never counts a document that is
not whole and alone as unchanged, so running it again finishes the job.

A local folder is one process's. A service that finds it held still starts: every
call raises ``StoreLockedError`` (HTTP 503, naming the folder and its lock file) and
the next call after the other process lets go opens it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import NotFoundError
from lathe.telemetry import log_fields
from services.rag.encoders import SparseEncoder
from services.rag.store_types import (
    DENSE,
    SPARSE,
    VERSION_KEYS,
    DimensionMismatchError,
    StoredChunk,
    StoreLockedError,
    point_id,
)

__all__ = ["DENSE", "SPARSE", "DocumentVersions", "StoreLockedError", "StoredChunk", "VectorStore", "point_id"]

log = logging.getLogger(__name__)


@dataclass
class DocumentVersions:
    """A document's chunks in the store, grouped by content hash."""

    stored: dict[str, int] = field(default_factory=dict)  # chunks found per hash
    expected: dict[str, int | None] = field(default_factory=dict)  # chunks its write meant (None: not recorded)
    written_at: dict[str, float] = field(default_factory=dict)

    def add(self, payload: dict[str, Any]) -> None:
        doc_hash = str(payload.get("doc_hash"))
        self.stored[doc_hash] = self.stored.get(doc_hash, 0) + 1
        self.expected[doc_hash] = payload.get("chunk_count")
        self.written_at[doc_hash] = float(payload.get("written_at") or 0.0)

    def whole(self, doc_hash: str) -> bool:
        expected = self.expected.get(doc_hash)
        return doc_hash in self.stored and (expected is None or self.stored[doc_hash] >= expected)

    @property
    def settled(self) -> str | None:
        """The hash when one whole version is stored alone; None after an interrupted write."""
        if len(self.stored) == 1:
            (only,) = self.stored
            return only if self.whole(only) else None
        return None

    def keep(self) -> str | None:
        """What recovery keeps: the newest whole version (None: no version is whole)."""
        whole = [h for h in self.stored if self.whole(h)]
        return max(whole, key=lambda h: self.written_at[h]) if whole else None


class VectorStore:
    """Every collection of one store (local folder or server); thread-safe."""

    def __init__(self, backend: Any, dimension: int, opener: Callable[[], Any] | None = None) -> None:
        self._backend = backend
        self._opener = opener  # opens a local folder that another process held at first
        self.dimension = dimension
        self._checked: set[str] = set()  # collections whose vector size matches the encoder
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, *, url: str | None, path: str | None, api_key: str | None, dimension: int, wait_for_lock: bool = False
    ) -> VectorStore:
        """Open a Qdrant server (``url``) or a local folder (``path``).

        A local folder held by another process raises ``StoreLockedError``; with
        ``wait_for_lock`` the store is returned anyway and opens the folder on the
        first call after the other process lets go (each call until then raises).
        """
        if url:
            from qdrant_client import QdrantClient

            from services.rag.store_server import ServerCollections

            client = QdrantClient(url=url, api_key=api_key, timeout=30)
            return cls(ServerCollections(client, SparseEncoder()), dimension)
        from services.rag.store_edge import EdgeCollections

        store = cls(None, dimension, opener=lambda: EdgeCollections(Path(str(path)), SparseEncoder()))
        try:
            store.connect()
        except StoreLockedError:
            if not wait_for_lock:
                raise
            log.warning("vector store in use by another process; waiting", extra=log_fields(path=str(path)))
        return store

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self.connect()
        return self._backend

    def connect(self) -> None:
        """Open the local folder if it is not open yet: ``StoreLockedError`` while another process holds it."""
        if self._backend is not None:
            return  # no lock: a health check must not wait behind a write
        with self._lock:
            if self._backend is None and self._opener is not None:
                backend = self._opener()
                try:
                    self.repair(backend)
                except BaseException:
                    backend.close()  # and its lock: the next call tries again
                    raise
                self._backend = backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    # -- recovery ---------------------------------------------------------------------
    def repair(self, backend: Any) -> dict[str, list[str]]:
        """Undo what a crash mid-write left: each document keeps its newest whole version.

        A version cut off mid-write (fewer chunks than it records) is deleted; so is an
        older whole version whose replacement was written but not yet cleaned up. A
        document with no whole version goes: it was never fully ingested. Returns the
        documents repaired per collection.
        """
        repaired: dict[str, list[str]] = {}
        for collection in backend.names():
            documents: dict[str, DocumentVersions] = {}
            for payload in backend.payloads(collection, None, VERSION_KEYS):
                documents.setdefault(str(payload.get("doc_id")), DocumentVersions()).add(payload)
            for doc_id, versions in documents.items():
                keep = versions.keep()
                drop = [h for h in versions.stored if h != keep]
                if not drop:
                    continue
                backend.delete(collection, {"doc_id": doc_id, "doc_hash": drop})
                repaired.setdefault(collection, []).append(doc_id)
                log.warning(
                    "repaired a document an interrupted write left behind",
                    extra=log_fields(collection=collection, doc_id=doc_id, kept=keep, dropped=drop),
                )
        return repaired

    # -- collections ------------------------------------------------------------------
    def exists(self, collection: str) -> bool:
        return self.backend.exists(collection)

    def require(self, collection: str) -> None:
        if not self.exists(collection):
            raise NotFoundError(f"collection {collection!r} does not exist", param="collection")
        self._check_dimension(collection)

    def _check_dimension(self, collection: str) -> None:
        if collection in self._checked:
            return
        made = self.backend.dimension(collection)
        if made is not None and made != self.dimension:
            raise DimensionMismatchError(
                f"collection {collection!r} holds {made}-dimensional vectors, but this service's encoder "
                f"makes {self.dimension}: it was made with another encoder",
                param="collection",
                hint=f"serve it with the encoder that made it, or delete it (DELETE /v1/rag/collections/{collection}) "
                "and ingest again",
            )
        self._checked.add(collection)

    def collections(self) -> list[dict[str, Any]]:
        backend = self.backend
        return [{"name": name, "chunks": backend.count(name)} for name in backend.names()]

    def drop(self, collection: str) -> None:
        if not self.exists(collection):
            self.require(collection)
        with self._lock:
            self.backend.drop(collection)
            self._checked.discard(collection)

    # -- documents --------------------------------------------------------------------
    def document_versions(self, collection: str, doc_id: str) -> DocumentVersions | None:
        """A document's stored versions (None: not in the collection)."""
        if not self.exists(collection):
            return None
        versions = DocumentVersions()
        for payload in self.backend.payloads(collection, {"doc_id": doc_id}, VERSION_KEYS):
            versions.add(payload)
        return versions if versions.stored else None

    def write_document(
        self, collection: str, doc_id: str, doc_hash: str, chunks: list[dict[str, Any]], vectors: list[list[float]]
    ) -> int:
        """Write a document's chunks, then drop its chunks of any other hash."""
        written_at = time.time()
        records = [{**chunk, "chunk_count": len(chunks), "written_at": written_at} for chunk in chunks]
        ids = [point_id(doc_id, doc_hash, chunk["chunk"]) for chunk in chunks]
        with self._lock:
            if self.exists(collection):
                self._check_dimension(collection)
            else:
                self.backend.create(collection, self.dimension)
                self._checked.add(collection)
            self.backend.upsert(collection, ids, records, vectors)
            self.backend.delete(collection, {"doc_id": doc_id}, keep_hash=doc_hash)
        return len(records)

    def delete_document(self, collection: str, doc_id: str) -> int:
        self.require(collection)
        with self._lock:
            count = self.backend.count(collection, {"doc_id": doc_id})
            if count == 0:
                raise NotFoundError(f"document {doc_id!r} is not in collection {collection!r}", param="doc_id")
            self.backend.delete(collection, {"doc_id": doc_id})
        return count

    def documents(self, collection: str) -> list[dict[str, Any]]:
        self.require(collection)
        docs: dict[str, dict[str, Any]] = {}
        for p in self.backend.payloads(collection, None, ["doc_id", "doc_hash", "source", "title"]):
            doc = docs.setdefault(
                p.get("doc_id", ""),
                {"id": p.get("doc_id"), "source": p.get("source"), "title": p.get("title"), "chunks": 0},
            )
            doc["hash"] = p.get("doc_hash")
            doc["chunks"] += 1
        return sorted(docs.values(), key=lambda d: str(d["id"]))

    # -- search -----------------------------------------------------------------------
    def search(
        self, collection: str, mode: str, query: str, vector: list[float] | None, limit: int, filters: dict
    ) -> list[StoredChunk]:
        """``mode``: ``dense`` (cosine) or ``sparse`` (BM25 with Qdrant's IDF).

        The caller has checked that the collection exists (``require``, once per
        retrieval); only the vector size is checked here, from a cache after the first call.
        """
        self._check_dimension(collection)
        return self.backend.search(collection, mode, query, vector, limit, filters)

    def optimize(self, collection: str) -> None:
        """Index what an ingest wrote, so searches use HNSW and the sparse index, not a scan."""
        if self.exists(collection):
            with self._lock:
                self.backend.optimize(collection)

    def vectors(self, collection: str, ids: list[str]) -> dict[str, list[float]]:
        return self.backend.vectors(collection, ids)
