"""Collections on a Qdrant server, through ``qdrant-client`` and LlamaIndex's Qdrant store.

The cluster's store (``LATHE_RAG_QDRANT_URL``); ``services/rag/store_edge.py`` is the
local one. Writes and searches go through LlamaIndex's ``QdrantVectorStore`` (its payload
layout, its hybrid vectors), the rest straight through ``qdrant-client``. Payload
indexes on the keys Lathe filters by keep a large collection's filters fast.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from services.rag.store_types import DENSE, SPARSE, StoredChunk, chunk_metadata


class ServerCollections:
    def __init__(self, client: Any, sparse: Any) -> None:
        self.client = client  # a QdrantClient
        self.sparse = sparse
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- collections ------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(item.name for item in self.client.get_collections().collections)

    def exists(self, collection: str) -> bool:
        return self.client.collection_exists(collection)

    def dimension(self, collection: str) -> int | None:
        vectors = self.client.get_collection(collection).config.params.vectors
        return vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None

    def create(self, collection: str, dimension: int) -> None:
        from qdrant_client import models

        self.client.create_collection(
            collection,
            vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        for key in ("doc_id", "doc_hash", "source", "section"):
            self.client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD)

    def drop(self, collection: str) -> None:
        self.client.delete_collection(collection)
        self._stores.pop(collection, None)

    def count(self, collection: str, filters: dict[str, Any] | None = None) -> int:
        condition = server_filter(filters) if filters else None
        return self.client.count(collection, count_filter=condition, exact=True).count

    def payloads(self, collection: str, filters: dict[str, Any] | None, keys: list[str]) -> Iterator[dict[str, Any]]:
        condition, offset = server_filter(filters) if filters else None, None
        while True:
            points, offset = self.client.scroll(
                collection, scroll_filter=condition, limit=1024, offset=offset, with_payload=keys
            )
            for point in points:
                yield dict(point.payload or {})
            if offset is None:
                return

    # -- writes -----------------------------------------------------------------------
    def _store(self, collection: str) -> Any:
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        with self._lock:
            if collection not in self._stores:
                self._stores[collection] = QdrantVectorStore(
                    collection_name=collection,
                    client=self.client,
                    enable_hybrid=True,
                    dense_vector_name=DENSE,
                    sparse_vector_name=SPARSE,
                    sparse_doc_fn=self.sparse.encode_documents,
                    sparse_query_fn=self.sparse.encode_queries,
                    batch_size=256,
                )
            return self._stores[collection]

    def upsert(
        self, collection: str, ids: list[str], records: list[dict[str, Any]], vectors: list[list[float]]
    ) -> None:
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        nodes = []
        for node_id, record, vector in zip(ids, records, vectors, strict=True):
            metadata = chunk_metadata(record)
            node = TextNode(
                id_=node_id,
                text=record["text"],
                metadata=metadata,
                embedding=vector,
                # Title and section count for BM25 too: they say what the chunk is about.
                excluded_embed_metadata_keys=[k for k in metadata if k not in ("title", "section")],
                excluded_llm_metadata_keys=list(metadata),
            )
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=record["doc_id"])
            nodes.append(node)
        self._store(collection).add(nodes)

    def delete(self, collection: str, filters: dict[str, Any], keep_hash: str | None = None) -> None:
        from qdrant_client import models

        condition = server_filter(filters)
        if keep_hash is not None:
            condition.must_not = [models.FieldCondition(key="doc_hash", match=models.MatchValue(value=keep_hash))]
        self.client.delete(collection, points_selector=models.FilterSelector(filter=condition), wait=True)

    # -- reads ------------------------------------------------------------------------
    def search(
        self, collection: str, mode: str, query: str, vector: list[float] | None, limit: int, filters: dict
    ) -> list[StoredChunk]:
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

        query_mode = VectorStoreQueryMode.SPARSE if mode == "sparse" else VectorStoreQueryMode.DEFAULT
        request = VectorStoreQuery(
            query_embedding=vector, query_str=query, similarity_top_k=limit, sparse_top_k=limit, mode=query_mode
        )
        result = self._store(collection).query(request, qdrant_filters=server_filter(filters) if filters else None)
        return [
            StoredChunk(node.node_id, node.get_content(), dict(node.metadata), float(score))
            for node, score in zip(result.nodes or [], result.similarities or [], strict=False)
        ]

    def optimize(self, collection: str) -> None:
        """Nothing to do: the server's own optimizers index in the background."""

    def vectors(self, collection: str, ids: list[str]) -> dict[str, list[float]]:
        points = self.client.retrieve(collection, ids=ids, with_vectors=[DENSE], with_payload=False)
        return {str(p.id): p.vector[DENSE] for p in points}

    def close(self) -> None:
        self.client.close()


def server_filter(filters: dict[str, Any]):
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
