"""Ingest documents into a collection: parse, chunk, embed, write — idempotently.

A document's id is its source path (or an id given with it); its hash covers the
bytes and the chunking settings. Re-ingesting an unchanged document writes nothing;
a changed one replaces exactly its chunks, and so does one that an interrupted ingest
left half-written. One document that fails (unsupported type, corrupt PDF, no text)
is reported and the others go on; a store held by another process fails the batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lathe.errors import InvalidRequestError, LatheError
from lathe.telemetry import log_fields
from services.rag.chunking import Chunker
from services.rag.documents import PARSER_VERSION, parse_document
from services.rag.metrics import RagMetrics
from services.rag.store import StoreLockedError, VectorStore

log = logging.getLogger(__name__)


@dataclass
class IncomingDocument:
    name: str  # a file name or path: it tells the format
    data: bytes
    id: str | None = None
    source: str | None = None
    format: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return self.id or self.source or self.name


@dataclass
class IngestOutcome:
    id: str
    source: str
    status: str  # added | updated | unchanged | failed
    chunks: int = 0
    error: str | None = None
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "source": self.source, "status": self.status, "chunks": self.chunks}
        if self.error:
            out["error"] = {"message": self.error, "code": self.error_code}
        return out


class Ingestor:
    def __init__(self, store: VectorStore, embed, chunker: Chunker, metrics: RagMetrics, max_bytes: int) -> None:
        self.store = store
        self.embed = embed
        self.chunker = chunker
        self.metrics = metrics
        self.max_bytes = max_bytes

    def fingerprint(self) -> str:
        c = self.chunker
        return f"p{PARSER_VERSION}:{c.name}:{getattr(c, 'chunk_words', 0)}:{getattr(c, 'overlap_words', 0)}"

    def content_hash(self, document: IncomingDocument) -> str:
        digest = hashlib.sha256(document.data)
        digest.update(self.fingerprint().encode())
        digest.update(repr(sorted(document.metadata.items())).encode())
        return digest.hexdigest()[:32]

    def ingest_one(self, collection: str, document: IncomingDocument) -> IngestOutcome:
        doc_id, source = document.doc_id, document.source or document.name
        try:
            if len(document.data) > self.max_bytes:
                raise LatheError(f"{document.name!r} is {len(document.data)} bytes, over {self.max_bytes}")
            doc_hash = self.content_hash(document)
            # Unchanged only when this version is stored whole and alone: a document an
            # interrupted ingest left half-written or twice is written again.
            previous = self.store.document_versions(collection, doc_id)
            if previous is not None and previous.settled == doc_hash:
                outcome = IngestOutcome(doc_id, source, "unchanged")
            else:
                parsed = parse_document(document.name, document.data, document.format)
                chunks = self.chunker.split(parsed)
                records = [
                    {
                        "text": chunk.text,
                        "doc_id": doc_id,
                        "doc_hash": doc_hash,
                        "source": source,
                        "title": document.metadata.get("title") or parsed.title,
                        "section": chunk.section,
                        "page": chunk.page,
                        "chunk": chunk.index,
                        "format": parsed.format,
                        "date": document_date(document.metadata),
                    }
                    for chunk in chunks
                ]
                # Title and section go into both encoders: they say what the chunk is about.
                texts = [_embed_text(r) for r in records]
                vectors = self.embed(texts)
                written = self.store.write_document(collection, doc_id, doc_hash, records, vectors)
                outcome = IngestOutcome(doc_id, source, "updated" if previous else "added", written)
                self.metrics.chunks_written.labels(collection=collection).inc(written)
        except StoreLockedError:
            raise  # the store, not this document: the whole ingest gets the 503
        except LatheError as exc:
            outcome = IngestOutcome(doc_id, source, "failed", error=exc.one_line(), error_code=exc.code)
        except Exception as exc:  # one document's surprise must not stop the batch
            log.exception("ingest failed", extra=log_fields(doc_id=doc_id))
            outcome = IngestOutcome(doc_id, source, "failed", error=f"{type(exc).__name__}: {exc}", error_code="error")
        self.metrics.documents.labels(collection=collection, outcome=outcome.status).inc()
        self.metrics.prime(collection)
        return outcome

    def ingest(self, collection: str, documents: list[IncomingDocument]) -> dict[str, Any]:
        started = time.perf_counter()
        outcomes = [self.ingest_one(collection, document) for document in documents]
        if any(o.chunks for o in outcomes):
            self.store.optimize(collection)
        seconds = time.perf_counter() - started
        written = sum(o.chunks for o in outcomes)
        return {
            "object": "rag.ingest",
            "collection": collection,
            "documents": [o.to_dict() for o in outcomes],
            "chunks_written": written,
            "failed": sum(o.status == "failed" for o in outcomes),
            "seconds": round(seconds, 3),
            "chunks_per_s": round(written / seconds, 2) if seconds > 0 else None,
        }


def _embed_text(record: dict[str, Any]) -> str:
    head = " — ".join(p for p in (record.get("title"), record.get("section")) if p)
    return f"{head}\n{record['text']}" if head else record["text"]


def document_date(metadata: dict[str, Any]) -> str | None:
    """A document's ``date`` metadata as an ISO 8601 UTC timestamp, for date filters."""
    value = metadata.get("date")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequestError(
            f"metadata.date {value!r} is not an ISO 8601 date (2024-05-01 or 2024-05-01T12:00:00Z)",
            param="metadata.date",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
