"""The RAG service's metrics (``lathe_rag_*``), served at ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from lathe.telemetry import new_registry

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class RagMetrics:
    registry: CollectorRegistry
    documents: Counter
    chunks_written: Counter
    retrieval: Histogram
    hits: Histogram
    queries: Counter
    rewrites: Counter

    @classmethod
    def create(cls) -> RagMetrics:
        r = new_registry()
        return cls(
            registry=r,
            documents=Counter(
                "lathe_rag_documents_ingested_total",
                "Documents ingested, by outcome (added, updated, unchanged, failed, deleted)",
                ["collection", "outcome"],
                registry=r,
            ),
            chunks_written=Counter(
                "lathe_rag_chunks_written_total", "Chunks written to the vector store", ["collection"], registry=r
            ),
            retrieval=Histogram(
                "lathe_rag_retrieval_seconds",
                "Retrieval latency (embedding, search, fusion, reranking)",
                ["collection", "mode"],
                buckets=_LATENCY,
                registry=r,
            ),
            hits=Histogram(
                "lathe_rag_retrieved_hits",
                "Chunks returned per retrieval",
                ["collection"],
                buckets=(0, 1, 2, 3, 4, 5, 8, 10, 20, 50),
                registry=r,
            ),
            queries=Counter(
                "lathe_rag_queries_total",
                "Questions answered, by outcome (answered, unknown, failed)",
                ["collection", "outcome"],
                registry=r,
            ),
            rewrites=Counter(
                "lathe_rag_rewrites_total",
                "Follow-up questions condensed before retrieval, by method (model, history, none)",
                ["method"],
                registry=r,
            ),
        )

    def prime(self, collection: str) -> None:
        """Create a collection's query series at zero when it is written, so that its first
        question is an increase a rate (and a latency quantile) can see."""
        for mode in ("dense", "sparse", "hybrid"):
            self.retrieval.labels(collection=collection, mode=mode)
        self.hits.labels(collection=collection)
        for outcome in ("answered", "unknown", "failed"):
            self.queries.labels(collection=collection, outcome=outcome)
