"""Collections in Qdrant, through LlamaIndex's Qdrant store and ``qdrant-client``.

One code path for both places Lathe runs: ``QdrantClient(path=...)`` (local mode, a
folder the RAG service owns) or ``QdrantClient(url=...)`` (a server in the cluster).
Each chunk is a point with a dense vector (MiniLM), a sparse vector (BM25 weights,
IDF applied by Qdrant) and its metadata: document id, content hash, source, title,
section, page and chunk number.

Replacing a document writes its new chunks first and then deletes the chunks of
any other hash, so an interrupted ingest leaves either the old or both versions,
never neither, and running it again finishes the job.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from lathe.errors import LatheError, NotFoundError
from services.rag.encoders import SparseEncoder

DENSE = "text-dense"
SPARSE = "text-sparse"
_POINT_NAMESPACE = uuid.UUID("5a8f3e0c-94c2-4d6e-9b1a-2f7d0c6b8e11")
_PAYLOAD_KEYS = ("doc_id", "doc_hash", "source", "title", "section", "page", "chunk", "format")


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


class VectorStore:
    """Every collection of one Qdrant (local folder or server); thread-safe."""

    def __init__(self, client: Any, dimension: int, sparse: SparseEncoder, server: bool = False) -> None:
        self.client = client
        self.server = server  # payload indexes only help a server; local mode scans
        self.dimension = dimension
        self.sparse = sparse
        self._stores: dict[str, Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def open(cls, *, url: str | None, path: str | None, api_key: str | None, dimension: int) -> VectorStore:
        from qdrant_client import QdrantClient

        if url:
            client = QdrantClient(url=url, api_key=api_key, timeout=30)
        else:
            try:
                client = QdrantClient(path=path)
            except RuntimeError as exc:  # local mode: another process holds the folder
                raise StoreLockedError(
                    f"the vector store at {path} is in use by another process: {exc}",
                    hint="stop the other RAG service, or point LATHE_RAG_QDRANT_PATH elsewhere",
                ) from None
        return cls(client, dimension, SparseEncoder(), server=bool(url))

    def close(self) -> None:
        self.client.close()

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
    def document_hash(self, collection: str, doc_id: str) -> str | None:
        """The content hash stored for a document (None: not in the collection)."""
        if not self.exists(collection):
            return None
        points, _ = self.client.scroll(
            collection, scroll_filter=_match({"doc_id": doc_id}), limit=1, with_payload=["doc_hash"]
        )
        return points[0].payload.get("doc_hash") if points else None

    def write_document(
        self, collection: str, doc_id: str, doc_hash: str, chunks: list[dict[str, Any]], vectors: list[list[float]]
    ) -> int:
        """Write a document's chunks, then drop its chunks of any other hash."""
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        store = self._store(collection, create=True)
        nodes = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            metadata = {k: chunk[k] for k in _PAYLOAD_KEYS if k in chunk and chunk[k] is not None}
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


def _match(filters: dict[str, Any]):
    """Equality filters; a list value matches any of its items."""
    from qdrant_client import models

    must = []
    for key, value in filters.items():
        if isinstance(value, list):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must)
