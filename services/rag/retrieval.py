"""Hybrid retrieval: dense and sparse candidates fused by reciprocal rank, then reranked.

    retriever.retrieve("how do I join paths", "docs", top_k=4, mode="hybrid")

Reciprocal rank fusion scores a chunk ``Σ 1/(k + rank)`` over the lists it is in: no
score calibration between cosine and BM25 is needed. Reranking is a plug point:
``mmr`` (default) trades relevance for variety so four chunks are not four copies of
one paragraph; ``llm`` asks the served model to grade each candidate; ``none`` keeps
the fused order. Each chunk keeps its dense cosine, which decides "I don't know".
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from lathe.errors import InvalidRequestError
from services.rag.store import StoredChunk, VectorStore

MODES = ("dense", "sparse", "hybrid")


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float  # the fused (or single-mode) score that ordered it
    dense_score: float | None = None
    sparse_score: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.metadata
        return {
            "id": self.id,
            "text": self.text,
            "doc_id": m.get("doc_id"),
            "source": m.get("source"),
            "title": m.get("title"),
            "section": m.get("section") or None,
            "page": m.get("page"),
            "chunk": m.get("chunk"),
            "score": round(self.score, 6),
            "dense_score": None if self.dense_score is None else round(self.dense_score, 6),
            "sparse_score": None if self.sparse_score is None else round(self.sparse_score, 6),
            "flags": list(self.flags),
        }


def reciprocal_rank_fusion(lists: list[list[StoredChunk]] | list[list[Hit]], k: int = 60) -> list[tuple[str, float]]:
    """Each id once, scored by the sum of 1 / (k + rank) over the lists; ties by id."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, chunk in enumerate(ranked, start=1):
            scores[chunk.id] = scores.get(chunk.id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


class Reranker(Protocol):
    name: str

    async def rerank(self, query: str, hits: list[Hit], top_k: int, context: dict[str, Any]) -> list[Hit]: ...


class KeepOrder:
    name = "none"

    async def rerank(self, query: str, hits: list[Hit], top_k: int, context: dict[str, Any]) -> list[Hit]:
        return hits[:top_k]


def maximal_marginal_relevance(relevance: list[float], vectors: list[list[float]], top_k: int, lam: float) -> list[int]:
    """Indices chosen greedily by ``λ·relevance − (1−λ)·max similarity to those chosen``."""
    import numpy as np

    if not relevance:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    rel = rel / (rel.max() or 1.0)
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    similarity = v @ v.T
    chosen: list[int] = []
    redundancy = np.zeros(len(rel))
    left = np.ones(len(rel), dtype=bool)
    while left.any() and len(chosen) < top_k:
        gain = np.where(left, lam * rel - (1 - lam) * redundancy, -np.inf)
        best = int(np.argmax(gain))
        chosen.append(best)
        left[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return chosen


class MmrReranker:
    name = "mmr"

    def __init__(self, store: VectorStore, lam: float) -> None:
        self.store = store
        self.lam = lam

    async def rerank(self, query: str, hits: list[Hit], top_k: int, context: dict[str, Any]) -> list[Hit]:
        if len(hits) <= 1:
            return hits[:top_k]
        vectors = self.store.vectors(context["collection"], [h.id for h in hits])
        if len(vectors) != len(hits):
            return hits[:top_k]
        order = maximal_marginal_relevance([h.score for h in hits], [vectors[h.id] for h in hits], top_k, self.lam)
        return [hits[i] for i in order]


class Retriever:
    def __init__(self, store: VectorStore, embed, candidates: int, rrf_k: int, rerankers: dict[str, Reranker]) -> None:
        self.store = store
        self.embed = embed  # callable: list[str] -> list[vector]
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.rerankers = rerankers
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lathe-sparse")

    async def retrieve(
        self,
        query: str,
        collection: str,
        *,
        top_k: int,
        mode: str = "hybrid",
        filters: dict[str, Any] | None = None,
        reranker: str = "mmr",
        context: dict[str, Any] | None = None,
    ) -> tuple[list[Hit], dict[str, float]]:
        """The ranked hits, the timings (ms) of each phase and the best dense cosine."""
        if mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}", param="mode")
        if reranker not in self.rerankers:
            raise InvalidRequestError(f"reranker must be one of {', '.join(self.rerankers)}", param="reranker")
        self.store.require(collection)
        filters = filters or {}
        timings: dict[str, float] = {}
        started = time.perf_counter()
        limit = max(self.candidates, top_k)
        # The sparse search needs no embedding: it runs while the query is embedded
        # (torch releases the GIL), which hides its cost, a server's round trip included.
        pending = (
            self._pool.submit(self.store.search, collection, "sparse", query, None, limit, filters)
            if mode != "dense"
            else None
        )
        vector = self.embed([query])[0] if mode != "sparse" else None
        timings["embed_ms"] = (time.perf_counter() - started) * 1000
        dense = self.store.search(collection, "dense", query, vector, limit, filters) if vector is not None else []
        sparse = pending.result() if pending is not None else []
        timings["search_ms"] = (time.perf_counter() - started) * 1000 - timings["embed_ms"]
        timings["best_dense_score"] = dense[0].score if dense else None
        by_id: dict[str, Hit] = {}
        for chunk in dense:
            by_id[chunk.id] = Hit(chunk.id, chunk.text, chunk.metadata, chunk.score, dense_score=chunk.score)
        for chunk in sparse:
            hit = by_id.setdefault(chunk.id, Hit(chunk.id, chunk.text, chunk.metadata, chunk.score))
            hit.sparse_score = chunk.score
        if mode == "hybrid":
            fused = reciprocal_rank_fusion([dense, sparse], self.rrf_k)
            hits = []
            for chunk_id, score in fused:
                by_id[chunk_id].score = score
                hits.append(by_id[chunk_id])
        else:
            hits = [by_id[c.id] for c in (dense or sparse)]
        rerank_started = time.perf_counter()
        context = {"collection": collection, "query_vector": vector, **(context or {})}
        hits = await self.rerankers[reranker].rerank(query, hits[: max(top_k * 3, top_k)], top_k, context)
        timings["rerank_ms"] = (time.perf_counter() - rerank_started) * 1000
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        return hits, timings
