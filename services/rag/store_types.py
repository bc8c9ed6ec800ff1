"""What both vector-store backends share: names, the chunk record, the errors."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from lathe.errors import LatheError

DENSE = "text-dense"
SPARSE = "text-sparse"
_POINT_NAMESPACE = uuid.UUID("5a8f3e0c-94c2-4d6e-9b1a-2f7d0c6b8e11")
PAYLOAD_KEYS = ("doc_id", "doc_hash", "source", "title", "section", "page", "chunk", "format", "date")
# What recovery reads of every point: whose version it is, how many chunks that version has, and when it was written.
VERSION_KEYS = ["doc_id", "doc_hash", "chunk_count", "written_at"]


class StoreLockedError(LatheError):
    status_code = 503
    error_type = "server_error"
    code = "store_locked"


class DimensionMismatchError(LatheError):
    status_code = 409
    error_type = "invalid_request_error"
    code = "dimension_mismatch"


@dataclass
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float


def point_id(doc_id: str, doc_hash: str, index: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{doc_id}\x00{doc_hash}\x00{index}"))


def chunk_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """The payload a chunk keeps besides its text: where it is from and which write made it."""
    keys = (*PAYLOAD_KEYS, "chunk_count", "written_at")
    return {k: record[k] for k in keys if record.get(k) is not None}


def sparse_text(record: dict[str, Any]) -> str:
    """What BM25 indexes: title and section say what the chunk is about, then its text.

    The same text LlamaIndex's Qdrant store encodes for a node with those two keys, so
    the server and the embedded engine score a chunk alike.
    """
    head = "\n".join(f"{k}: {record[k]}" for k in ("title", "section") if record.get(k))
    return f"{head}\n\n{record['text']}" if head else record["text"]


def legacy_text(payload: dict[str, Any]) -> str:
    """A chunk's text from a point LlamaIndex's Qdrant store wrote (``_node_content``) or Lathe's (``text``)."""
    if "text" in payload:
        return str(payload["text"])
    try:
        return str(json.loads(payload.get("_node_content") or "{}").get("text", ""))
    except ValueError:
        return ""
