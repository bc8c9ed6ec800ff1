"""Collections in Qdrant, through LlamaIndex's Qdrant store and ``qdrant-client``.

One code path for both places Lathe runs: ``QdrantClient(path=...)`` (local mode, a
folder the RAG service owns) or ``QdrantClient(url=...)`` (a server in the cluster).
Each chunk is a point with a dense vector (MiniLM), a sparse vector (BM25 weights,
IDF applied by Qdrant) and its metadata: document id, content hash, source, title,
section, page and chunk number.

Replacing a document writes its new chunks first and then deletes the chunks of
any other hash, so a crash never loses the old version before the new one is whole.
Every chunk records how many chunks its version has and when it was written, which
is what recovery reads: a version with fewer chunks than it should have was cut off
mid-write. Opening a local folder repairs what a crash left (each document keeps its
newest whole version, nothing else), and an ingest never counts a document that is
not whole and alone as unchanged, so running it again finishes the job.

Local mode locks its folder to one process. A service that finds it held still
starts: every call raises ``StoreLockedError`` (HTTP 503, naming the folder and its
lock file) and the next call after the other process lets go opens it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import LatheError, NotFoundError
from lathe.telemetry import log_fields
from services.rag.encoders import SparseEncoder

log = logging.getLogger(__name__)

DENSE = "text-dense"
SPARSE = "text-sparse"
_POINT_NAMESPACE = uuid.UUID("5a8f3e0c-94c2-4d6e-9b1a-2f7d0c6b8e11")
_PAYLOAD_KEYS = ("doc_id", "doc_hash", "source", "title", "section", "page", "chunk", "format", "date")
# What recovery reads of every point: whose version it is, how many chunks that version has, and when it was written.
_VERSION_KEYS = ["doc_id", "doc_hash", "chunk_count", "written_at"]


class StoreLockedError(LatheError):
    status_code = 503
    error_type = "server_error"
    code = "store_locked"


@dataclass
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float


def point_id(doc_id: str, doc_hash: str, index: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{doc_id}\x00{doc_hash}\x00{index}"))


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
    """Every collection of one Qdrant (local folder or server); thread-safe."""

    def __init__(
        self,
        client: Any,
        dimension: int,
        sparse: SparseEncoder,
        server: bool = False,
        opener: Callable[[], Any] | None = None,
    ) -> None:
        self._client = client
        self._opener = opener  # opens a local folder that another process held at first
        self.server = server  # payload indexes only help a server; local mode scans
        self.dimension = dimension
        self.sparse = sparse
        self._stores: dict[str, Any] = {}
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
        from qdrant_client import QdrantClient

        if url:
            return cls(QdrantClient(url=url, api_key=api_key, timeout=30), dimension, SparseEncoder(), server=True)
        store = cls(None, dimension, SparseEncoder(), opener=lambda: _open_local(Path(str(path))))
        try:
            store.connect()
        except StoreLockedError:
            if not wait_for_lock:
                raise
            log.warning("vector store in use by another process; waiting", extra=log_fields(path=str(path)))
        return store

    @property
    def client(self) -> Any:
        if self._client is None:
            self.connect()
        return self._client

    def connect(self) -> None:
        """Open the local folder if it is not open yet: ``StoreLockedError`` while another process holds it."""
        if self._client is not None:
            return  # no lock: a health check must not wait behind a write
        with self._lock:
            if self._client is None and self._opener is not None:
                client = self._opener()
                try:
                    self.repair(client)
                except BaseException:
                    client.close()  # and its lock: the next call tries again
                    raise
                self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- recovery ---------------------------------------------------------------------
    def repair(self, client: Any) -> dict[str, list[str]]:
        """Undo what a crash mid-write left: each document keeps its newest whole version.

        A version cut off mid-write (fewer chunks than it records) is deleted; so is an
        older whole version whose replacement was written but not yet cleaned up. A
        document with no whole version goes: it was never fully ingested. Returns the
        documents repaired per collection.
        """
        from qdrant_client import models

        repaired: dict[str, list[str]] = {}
        for item in client.get_collections().collections:
            collection = item.name
            for doc_id, versions in _all_versions(client, collection).items():
                keep = versions.keep()
                drop = [h for h in versions.stored if h != keep]
                if not drop:
                    continue
                condition = _match({"doc_id": doc_id, "doc_hash": drop})
                client.delete(collection, points_selector=models.FilterSelector(filter=condition), wait=True)
                repaired.setdefault(collection, []).append(doc_id)
                log.warning(
                    "repaired a document an interrupted write left behind",
                    extra=log_fields(collection=collection, doc_id=doc_id, kept=keep, dropped=drop),
                )
        return repaired

    # -- collections ------------------------------------------------------------------
    def exists(self, collection: str) -> bool:
        return self.client.collection_exists(collection)

    def require(self, collection: str) -> None:
        if not self.exists(collection):
            raise NotFoundError(f"collection {collection!r} does not exist", param="collection")

    def collections(self) -> list[dict[str, Any]]:
        out = []
        for item in self.client.get_collections().collections:
            count = self.client.count(item.name, exact=True).count
            out.append({"name": item.name, "chunks": count})
        return sorted(out, key=lambda c: c["name"])

    def drop(self, collection: str) -> None:
        self.require(collection)
        with self._lock:
            self.client.delete_collection(collection)
            self._stores.pop(collection, None)

    def _store(self, collection: str, create: bool = False) -> Any:
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import models

        with self._lock:
            if collection in self._stores:
                return self._stores[collection]
            if not self.exists(collection):
                if not create:
                    self.require(collection)
                self.client.create_collection(
                    collection,
                    vectors_config={DENSE: models.VectorParams(size=self.dimension, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
                for key in ("doc_id", "doc_hash", "source", "section") if self.server else ():
                    self.client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD)
            store = QdrantVectorStore(
                collection_name=collection,
                client=self.client,
                enable_hybrid=True,
                dense_vector_name=DENSE,
                sparse_vector_name=SPARSE,
                sparse_doc_fn=self.sparse.encode_documents,
                sparse_query_fn=self.sparse.encode_queries,
                batch_size=256,
            )
            self._stores[collection] = store
            return store

    # -- documents --------------------------------------------------------------------
    def document_versions(self, collection: str, doc_id: str) -> DocumentVersions | None:
        """A document's stored versions (None: not in the collection)."""
        if not self.exists(collection):
            return None
        versions = DocumentVersions()
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, scroll_filter=_match({"doc_id": doc_id}), limit=256, offset=offset,
                with_payload=_VERSION_KEYS,
            )  # fmt: skip
            for point in points:
                versions.add(point.payload or {})
            if offset is None:
                break
        return versions if versions.stored else None

    def write_document(
        self, collection: str, doc_id: str, doc_hash: str, chunks: list[dict[str, Any]], vectors: list[list[float]]
    ) -> int:
        """Write a document's chunks, then drop its chunks of any other hash."""
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        store = self._store(collection, create=True)
        written_at = time.time()
        nodes = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            metadata = {k: chunk[k] for k in _PAYLOAD_KEYS if k in chunk and chunk[k] is not None}
            metadata.update(chunk_count=len(chunks), written_at=written_at)
            node = TextNode(
                id_=point_id(doc_id, doc_hash, chunk["chunk"]),
                text=chunk["text"],
                metadata=metadata,
                embedding=vector,
                # Title and section count for BM25 too: they say what the chunk is about.
                excluded_embed_metadata_keys=[k for k in metadata if k not in ("title", "section")],
                excluded_llm_metadata_keys=list(metadata),
            )
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
            nodes.append(node)
        with self._lock:
            store.add(nodes)
            self._delete(collection, doc_id, keep_hash=doc_hash)
        return len(nodes)

    def delete_document(self, collection: str, doc_id: str) -> int:
        self.require(collection)
        with self._lock:
            count = self.client.count(collection, count_filter=_match({"doc_id": doc_id}), exact=True).count
            if count == 0:
                raise NotFoundError(f"document {doc_id!r} is not in collection {collection!r}", param="doc_id")
            self._delete(collection, doc_id)
        return count

    def _delete(self, collection: str, doc_id: str, keep_hash: str | None = None) -> None:
        from qdrant_client import models

        condition = _match({"doc_id": doc_id})
        if keep_hash is not None:
            condition.must_not = [models.FieldCondition(key="doc_hash", match=models.MatchValue(value=keep_hash))]
        self.client.delete(collection, points_selector=models.FilterSelector(filter=condition), wait=True)

    def documents(self, collection: str) -> list[dict[str, Any]]:
        self.require(collection)
        docs: dict[str, dict[str, Any]] = {}
        offset = None
        while True:
            points, offset = self.client.scroll(
                collection, limit=512, offset=offset, with_payload=["doc_id", "doc_hash", "source", "title"]
            )
            for point in points:
                p = point.payload or {}
                doc = docs.setdefault(
                    p.get("doc_id", ""),
                    {"id": p.get("doc_id"), "source": p.get("source"), "title": p.get("title"), "chunks": 0},
                )
                doc["hash"] = p.get("doc_hash")
                doc["chunks"] += 1
            if offset is None:
                break
        return sorted(docs.values(), key=lambda d: str(d["id"]))

    # -- search -----------------------------------------------------------------------
    def search(
        self, collection: str, mode: str, query: str, vector: list[float] | None, limit: int, filters: dict
    ) -> list[StoredChunk]:
        """``mode``: ``dense`` (cosine) or ``sparse`` (BM25 with Qdrant's IDF)."""
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

        store = self._store(collection)
        query_mode = VectorStoreQueryMode.SPARSE if mode == "sparse" else VectorStoreQueryMode.DEFAULT
        request = VectorStoreQuery(
            query_embedding=vector, query_str=query, similarity_top_k=limit, sparse_top_k=limit, mode=query_mode
        )
        result = store.query(request, qdrant_filters=_match(filters) if filters else None)
        return [
            StoredChunk(node.node_id, node.get_content(), dict(node.metadata), float(score))
            for node, score in zip(result.nodes or [], result.similarities or [], strict=False)
        ]

    def vectors(self, collection: str, ids: list[str]) -> dict[str, list[float]]:
        points = self.client.retrieve(collection, ids=ids, with_vectors=[DENSE], with_payload=False)
        return {str(p.id): p.vector[DENSE] for p in points}


def _open_local(path: Path) -> Any:
    """``QdrantClient(path=...)``, or ``StoreLockedError`` while another process holds the folder.

    The lock is tried first: qdrant-client reads every collection before it looks at
    the lock, which a service waiting for the folder would otherwise pay on every call.
    """
    import portalocker
    from qdrant_client import QdrantClient

    lock_file = path / ".lock"

    def locked(reason: str) -> StoreLockedError:
        return StoreLockedError(
            f"the vector store at {path} is in use by another process (it holds {lock_file}): {reason}",
            hint="stop the other process (another RAG service, or a QdrantClient on that folder), "
            "or point LATHE_RAG_QDRANT_PATH elsewhere; the service opens the store once it is free",
        )

    if lock_file.exists():
        with open(lock_file, "r+") as handle:
            try:
                portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
            except portalocker.exceptions.LockException:
                raise locked("its lock is taken") from None
            portalocker.unlock(handle)
    path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # taken between the check and the open
        raise locked(str(exc)) from None


def _all_versions(client: Any, collection: str) -> dict[str, DocumentVersions]:
    documents: dict[str, DocumentVersions] = {}
    offset = None
    while True:
        points, offset = client.scroll(collection, limit=1024, offset=offset, with_payload=_VERSION_KEYS)
        for point in points:
            payload = point.payload or {}
            documents.setdefault(str(payload.get("doc_id")), DocumentVersions()).add(payload)
        if offset is None:
            break
    return documents


def _match(filters: dict[str, Any]):
    """Equality filters; a list value matches any of its items; a range (``date``) its bounds."""
    from qdrant_client import models

    must = []
    for key, value in filters.items():
        if hasattr(value, "gte"):  # schemas.DateRange
            bounds = {name: getattr(value, name) for name in ("gte", "gt", "lte", "lt")}
            must.append(models.FieldCondition(key=key, range=models.DatetimeRange(**bounds)))
        elif isinstance(value, list):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must)
