"""Ingest documents into a RAG collection and stop dead once N chunks are on disk.

tests/integration/test_rag_faults.py runs this as its own process and SIGKILLs it when
it prints ``PAUSED``: the store then holds exactly what a crash at that moment leaves.
Each chunk is written to the store (Qdrant Edge) as its own upsert, written through
the engine's write-ahead log and flushed, so counting the upserts is counting the
chunks that exist.

    python -m tests.support.interrupted_ingest COLLECTION DOCUMENTS.json --pause-after-chunks N

Settings (home, chunking) come from the environment, as for the service; the
documents file is a JSON list of ``{"source", "filename", "text"}``, as the ingest
route takes them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("collection")
    parser.add_argument("documents", type=Path)
    parser.add_argument("--pause-after-chunks", type=int, required=True)
    args = parser.parse_args()

    from services.rag.ingest import IncomingDocument
    from services.rag.service import RagService
    from services.rag.settings import RagServiceSettings
    from services.rag.store_edge import EdgeCollections

    persisted = 0
    upsert = EdgeCollections.upsert

    def one_chunk_at_a_time(self, collection, ids, records, vectors) -> None:
        nonlocal persisted
        for one in zip(ids, records, vectors, strict=True):
            upsert(self, collection, *([item] for item in one))
            persisted += 1
            if persisted == args.pause_after_chunks:
                print(f"PAUSED after {persisted} chunks", flush=True)
                time.sleep(3600)  # until the test kills us

    EdgeCollections.upsert = one_chunk_at_a_time
    service = RagService.build(RagServiceSettings())
    print("READY", flush=True)
    for item in json.loads(args.documents.read_text()):
        document = IncomingDocument(item["filename"], item["text"].encode("utf-8"), source=item["source"])
        outcome = service.ingestor.ingest_one(args.collection, document)
        print("DONE", json.dumps(outcome.to_dict()), flush=True)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
