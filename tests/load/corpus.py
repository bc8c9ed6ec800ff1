"""The small collection the RAG scenario asks about, and how it gets there.

Three short documents, ingested through the gateway (idempotent: a second ingest writes
nothing). The questions in ``locustfile.RAG_QUESTIONS`` are about them, so each query
finds a relevant chunk and the served model generates an answer.
"""

from __future__ import annotations

import httpx

COLLECTION = "lathe-load"

DOCUMENTS = [
    {
        "source": "load/gateway-quotas.md",
        "filename": "gateway-quotas.md",
        "text": (
            "# Gateway quotas\n\n"
            "Every request through the gateway carries an API key. A key may have a limit of requests per "
            "minute and a limit of tokens per minute, counted over a sliding window of one minute. "
            "A request that does not fit is refused with HTTP status 429 and a Retry-After header that says "
            "when to try again. A lifetime token budget stops a key once it has spent its tokens.\n"
        ),
    },
    {
        "source": "load/hot-swap.md",
        "filename": "hot-swap.md",
        "text": (
            "# Hot swap\n\n"
            "The inference service serves the model version that a registry alias points at. When the alias "
            "moves, it starts a second vLLM engine beside the first, switches new requests once the new engine "
            "is healthy, and lets the old engine finish its requests before stopping it, so no request fails "
            "during the swap.\n"
        ),
    },
    {
        "source": "load/ingest.md",
        "filename": "ingest.md",
        "text": (
            "# Ingest\n\n"
            "The RAG service reads PDF, DOCX, HTML, Markdown, reStructuredText and plain text. Each document is "
            "cut into windows of about 160 words with 30 words of overlap, embedded with MiniLM and stored in "
            "Qdrant with a sparse BM25 vector beside the dense one. Ingesting an unchanged document again writes "
            "nothing.\n"
        ),
    },
]


def ingest(gateway_url: str, api_key: str, collection: str = COLLECTION, timeout: float = 300) -> dict:
    """Put the documents into ``collection`` through the gateway; the service's ingest report."""
    response = httpx.post(
        f"{gateway_url.rstrip('/')}/v1/rag/collections/{collection}/documents",
        json={"documents": DOCUMENTS},
        headers={"authorization": f"Bearer {api_key}"},
        timeout=timeout,
    )
    response.raise_for_status()
    report = response.json()
    failed = [d for d in report["documents"] if d["status"] == "failed"]
    if failed:
        raise RuntimeError(f"the load corpus did not ingest: {failed}")
    return report
