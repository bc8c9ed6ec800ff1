"""OpenAI's ``POST /v1/embeddings`` from the RAG service's own encoder (MiniLM).

No embedding server runs on a laptop, so the local gateway routes the encoder's model
name (``LATHE_RAG_EMBEDDING_MODEL``, default ``all-minilm-l6-v2``) here: any OpenAI
client gets the same vectors the collections are searched with.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.rag.deps import ServiceDep
from services.rag.schemas import EmbeddingsRequest

router = APIRouter(prefix="/v1", tags=["embeddings"])


@router.post("/embeddings")
async def embeddings(body: EmbeddingsRequest, rag: ServiceDep) -> dict:
    """One vector per input, in input order; ``usage`` counts the word pieces embedded."""
    return await rag.embeddings(body)
