"""Retrieval and answers: ``/v1/rag/retrieve`` and ``/v1/rag/query``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.rag.deps import Authorization, ServiceDep
from services.rag.schemas import QueryRequest, RetrieveRequest

router = APIRouter(prefix="/v1/rag", tags=["rag"])


@router.post("/retrieve")
async def retrieve(body: RetrieveRequest, rag: ServiceDep, authorization: Authorization) -> dict:
    """The ranked chunks for a query, with no generation."""
    return await rag.retrieve_response(body, authorization)


@router.post("/query", response_model=None)
async def query(body: QueryRequest, rag: ServiceDep, authorization: Authorization) -> dict | StreamingResponse:
    """An answer from the collection with numbered citations; SSE when ``stream`` is true."""
    if body.stream:
        return StreamingResponse(
            rag.query_stream(body, authorization), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )
    return await rag.query(body, authorization)
