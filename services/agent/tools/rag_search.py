"""``rag_search``: the top chunks of a collection, from the RAG service through the gateway.

Calls ``POST {gateway}/v1/rag/retrieve`` with the caller's key and gives the model a
compact text: one block per chunk with its source, section and (cut) text.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from services.agent.tools.base import BaseTool, ToolContext, ToolError

CHUNK_CHARS = 400


def format_chunks(data: list[dict]) -> str:
    if not data:
        return "no matching documents"
    blocks = []
    for i, chunk in enumerate(data, 1):
        where = chunk.get("source") or chunk.get("title") or chunk.get("id") or "?"
        if chunk.get("section"):
            where += f" § {chunk['section']}"
        if chunk.get("page") is not None:
            where += f" p.{chunk['page']}"
        text = " ".join(str(chunk.get("text", "")).split())
        if len(text) > CHUNK_CHARS:
            text = text[:CHUNK_CHARS] + "…"
        blocks.append(f"[{i}] {where}\n{text}")
    return "\n".join(blocks)


class RagSearch(BaseTool):
    name = "rag_search"
    description = "Search the document collection and get the most relevant passages with their sources."
    input_is_argument = True

    class Input(BaseModel):
        model_config = {"extra": "forbid"}

        query: str = Field(description="What to search for.", min_length=1, max_length=2000)
        top_k: int | None = Field(default=None, ge=1, le=20, description="How many passages to return.")
        collection: str | None = Field(default=None, description="Collection name (default: the configured one).")

    async def run(self, args: Input, ctx: ToolContext) -> str:
        body = {
            "query": args.query,
            "collection": args.collection or self.settings.rag_collection,
            "top_k": args.top_k or self.settings.rag_top_k,
            "filters": {},
        }
        url = self.settings.gateway_url.rstrip("/") + "/v1/rag/retrieve"
        try:
            response = await ctx.http.post(url, json=body, headers=ctx.gateway_headers())
        except httpx.HTTPError as exc:
            raise ToolError(f"document search unavailable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ToolError(f"document search failed ({response.status_code}): {_message(response)}")
        try:
            data = response.json().get("data", [])
        except (ValueError, AttributeError):
            raise ToolError("document search answered something that is not JSON") from None
        return format_chunks(data)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
