"""Retrieval latency and store memory as a collection grows: 2k, 20k and 200k chunks.

Part of ``make bench-rag`` (``benchmarks/rag.py`` runs each size in its own process).
The collections are built from the demo corpus's real chunks (text, MiniLM vectors,
metadata, as the RAG service stored them) and synthetic variants of them: each
variant drops a sixth of its chunk's words and shifts its vector by Gaussian noise to a
cosine of about 0.9 with the original, so the collection keeps the corpus's clusters
and vocabulary at every size. Embedding 200k chunks with MiniLM would take hours on
these cores, and the store's cost depends on the vectors' distribution, not on who
made them. Queries are the question set, embedded for real on every call: the
latency is the service's own retrieval (query embedding, both searches, fusion, MMR).

The same ``VectorStore`` runs over Qdrant Edge (the store) and over qdrant-client's
local mode (the store before it), side by side.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 7
NOISE_NORM = 0.48  # |noise| for a unit vector: cosine ~ 1/sqrt(1 + 0.48^2) ~ 0.90


def save_real_points(shard_folder: Path, out: Path) -> None:
    """The chunks an ingest stored, read from its Edge folder: ``vectors.npy`` and ``records.jsonl``."""
    import qdrant_edge as qe

    from services.rag.store_types import DENSE

    shard = qe.EdgeShard.load(str(shard_folder))
    records, vectors, offset = [], [], None
    try:
        while True:
            points, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=512, with_payload=True, with_vector=[DENSE])
            )
            for p in points:
                records.append(dict(p.payload))
                vectors.append(p.vector[DENSE])
            if offset is None:
                break
    finally:
        shard.close()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", np.asarray(vectors, dtype=np.float32))
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def scale_points(records: list[dict], vectors: np.ndarray, size: int, batch: int = 1024):
    """Batches of (ids, records, vectors): the real chunks first, then variants of them, ``size`` in all."""
    import uuid

    rng = np.random.default_rng(SEED)
    n = len(records)
    for start in range(0, size, batch):
        ids, out_records, out_vectors = [], [], []
        for i in range(start, min(size, start + batch)):
            source, variant = i % n, i // n
            record = dict(records[source])
            vector = vectors[source]
            if variant:
                words = record["text"].split()
                keep = rng.random(len(words)) > 1 / 6
                record["text"] = " ".join(w for w, k in zip(words, keep, strict=True) if k) or words[0]
                record["doc_id"] = f"{record['doc_id']}~{variant}"
                noise = rng.normal(size=vector.shape).astype(np.float32)
                vector = vector + noise * (NOISE_NORM / np.linalg.norm(noise))
                vector = vector / np.linalg.norm(vector)
            ids.append(str(uuid.uuid5(uuid.NAMESPACE_OID, f"{i}")))
            out_records.append(record)
            out_vectors.append(vector.tolist())
        yield ids, out_records, out_vectors


def measure(points: Path, questions: Path, size: int, engine: str, repeats: int) -> dict:
    """Build a ``size``-chunk collection on ``engine`` (``edge`` or ``local``), then time retrieval."""
    import psutil

    from services.rag.answer import GatewayChat
    from services.rag.encoders import DenseEncoder, SparseEncoder
    from services.rag.service import RagService
    from services.rag.settings import RagServiceSettings
    from services.rag.store import VectorStore

    records = [json.loads(line) for line in (points / "records.jsonl").read_text().splitlines()]
    vectors = np.load(points / "vectors.npy")
    questions_list = [json.loads(line)["question"] for line in questions.read_text().splitlines()]
    with tempfile.TemporaryDirectory() as work:
        settings = RagServiceSettings(LATHE_HOME=work)
        encoder = DenseEncoder(
            settings.embed_model(), settings.embed_batch_size, settings.embed_threads,
            backend=settings.encoder, cache=settings.encoder_cache_path,
        )  # fmt: skip
        encoder.encode(["warm up"])
        process = psutil.Process()
        rss_before = process.memory_info().rss
        if engine == "local":
            from qdrant_client import QdrantClient

            from services.rag.store_server import ServerCollections

            backend = ServerCollections(QdrantClient(path=str(Path(work) / "local")), SparseEncoder())
            store = VectorStore(backend, encoder.dimension)
        else:
            store = VectorStore.open(url=None, path=str(Path(work) / "edge"), api_key=None, dimension=encoder.dimension)
        started = time.perf_counter()
        store.backend.create("scale", encoder.dimension)
        for ids, batch_records, batch_vectors in scale_points(records, vectors, size):
            store.backend.upsert("scale", ids, batch_records, batch_vectors)
        store.optimize("scale")
        build_s = time.perf_counter() - started
        service = RagService(settings, encoder, store, GatewayChat(settings.gateway_url, 5.0))
        retrieve = service.retriever.retrieve
        asyncio.run(retrieve(questions_list[0], "scale", top_k=5, mode="hybrid"))
        latencies = []
        for _ in range(repeats):
            for question in questions_list:
                began = time.perf_counter()
                asyncio.run(retrieve(question, "scale", top_k=5, mode="hybrid"))
                latencies.append((time.perf_counter() - began) * 1000)
        rss_mb = (process.memory_info().rss - rss_before) / 2**20
        chunks = store.backend.count("scale")
        store.close()
    latencies.sort()
    return {
        "engine": engine,
        "chunks": chunks,
        "build_s": build_s,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1],
        "queries": len(latencies),
        "store_rss_mb": rss_mb,
    }
