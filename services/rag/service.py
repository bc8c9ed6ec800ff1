"""The RAG service's parts wired together: what the routes call.

Embedding and Qdrant calls are blocking and CPU-bound; they run in a worker thread so
the event loop keeps answering health checks while a large ingest runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from lathe.errors import InvalidRequestError, LatheError, ModelNotFoundError
from services.rag.answer import (
    NO_ANSWER,
    GatewayChat,
    LlmJudgeReranker,
    build_messages,
    cite,
    claims,
    cut_repetition,
    faithfulness,
    fit_context,
)
from services.rag.chunking import make_chunker
from services.rag.conversation import (
    Condensed,
    accept_rewrite,
    clean_rewrite,
    condense_messages,
    fit_history,
    has_user_turn,
    history_query,
)
from services.rag.encoders import DenseEncoder
from services.rag.expansion import expansion_messages, fuse_hits, fuse_info, parse_variants
from services.rag.ingest import IncomingDocument, Ingestor
from services.rag.metrics import RagMetrics
from services.rag.retrieval import Hit, KeepOrder, MmrReranker, Retriever
from services.rag.schemas import EmbeddingsRequest, QueryRequest, RetrieveRequest
from services.rag.settings import RagServiceSettings
from services.rag.store import VectorStore


class RagService:
    def __init__(self, settings: RagServiceSettings, encoder: DenseEncoder, store: VectorStore, chat: GatewayChat):
        self.settings = settings
        self.encoder = encoder
        self.store = store
        self.chat = chat
        self.metrics = RagMetrics.create()
        chunker = make_chunker(settings.chunking, settings.chunk_words, settings.overlap_words)
        self.ingestor = Ingestor(store, encoder.encode, chunker, self.metrics, settings.max_document_bytes)
        rerankers = {
            "mmr": MmrReranker(store, settings.mmr_lambda),
            "none": KeepOrder(),
            "llm": LlmJudgeReranker(chat, settings.model),
        }
        self.retriever = Retriever(store, encoder.encode, settings.candidates, settings.rrf_k, rerankers)
        self._write_lock = asyncio.Lock()  # one ingest at a time keeps replacement ordered

    @classmethod
    def build(cls, settings: RagServiceSettings, transport=None) -> RagService:
        encoder = DenseEncoder(
            settings.embed_model(), settings.embed_batch_size, settings.embed_threads,
            backend=settings.encoder, cache=settings.encoder_cache_path,
        )  # fmt: skip
        if settings.qdrant_url is None:
            settings.store_path.mkdir(parents=True, exist_ok=True)
        store = VectorStore.open(
            url=settings.qdrant_url,
            path=str(settings.store_path),
            api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
            dimension=encoder.dimension,
            wait_for_lock=True,  # start anyway: /health and every call say who holds it until it is free
        )
        chat = GatewayChat(settings.gateway_url, settings.request_timeout_s, transport)
        return cls(settings, encoder, store, chat)

    async def close(self) -> None:
        await self.chat.close()
        self.store.close()

    # -- ingest -----------------------------------------------------------------------
    async def ingest(self, collection: str, documents: list[IncomingDocument]) -> dict[str, Any]:
        async with self._write_lock:
            return await asyncio.to_thread(self.ingestor.ingest, collection, documents)

    async def delete_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        async with self._write_lock:
            removed = await asyncio.to_thread(self.store.delete_document, collection, doc_id)
        self.metrics.documents.labels(collection=collection, outcome="deleted").inc()
        return {"object": "rag.document.deleted", "collection": collection, "id": doc_id, "chunks_removed": removed}

    # -- embeddings (OpenAI's /v1/embeddings, for clients of the gateway) ---------------
    async def embeddings(self, body: EmbeddingsRequest) -> dict[str, Any]:
        name = self.settings.embedding_model
        if body.model != name:
            raise ModelNotFoundError(f"model {body.model!r} is not served here (embeddings: {name!r})", param="model")
        if body.dimensions is not None and body.dimensions != self.encoder.dimension:
            raise InvalidRequestError(
                f"{name} makes {self.encoder.dimension}-dimensional vectors; 'dimensions' cannot change that",
                param="dimensions",
            )
        vectors, pieces = await asyncio.to_thread(self.encoder.embed, body.texts())
        data = [
            {"object": "embedding", "index": i, "embedding": _wire_vector(vector, body.encoding_format)}
            for i, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": pieces, "total_tokens": pieces}
        return {"object": "list", "data": data, "model": name, "usage": usage}

    # -- retrieval --------------------------------------------------------------------
    async def retrieve(self, body: RetrieveRequest, authorization: str | None) -> tuple[list[Hit], dict[str, Any]]:
        top_k = min(body.top_k or self.settings.top_k, self.settings.max_top_k)
        reranker = body.reranker or self.settings.reranker
        started = time.perf_counter()
        if reranker == "llm":
            hits, info = await self.retriever.retrieve(
                body.query, body.collection, top_k=top_k, mode=body.mode, filters=body.filters,
                reranker=reranker, context={"authorization": authorization},
            )  # fmt: skip
        else:
            hits, info = await asyncio.to_thread(
                _run, self.retriever.retrieve(
                    body.query, body.collection, top_k=top_k, mode=body.mode, filters=body.filters, reranker=reranker
                ),
            )  # fmt: skip
        elapsed = time.perf_counter() - started
        self.metrics.retrieval.labels(collection=body.collection, mode=body.mode).observe(elapsed)
        self.metrics.hits.labels(collection=body.collection).observe(len(hits))
        info.update(mode=body.mode, reranker=reranker, top_k=top_k)
        return hits, info

    async def retrieve_response(self, body: RetrieveRequest, authorization: str | None) -> dict[str, Any]:
        hits, info = await self.retrieve(body, authorization)
        return {"object": "list", "collection": body.collection, "data": [h.to_dict() for h in hits], "info": info}

    def _relevant(self, hits: list[Hit], info: dict[str, Any]) -> bool:
        best = info.get("best_dense_score")
        if best is None:  # sparse-only retrieval: any hit counts
            return bool(hits)
        return bool(hits) and best >= self.settings.relevance_threshold

    def _generation(self, body: QueryRequest, hits: list[Hit]) -> dict[str, Any]:
        extra = {"repetition_penalty": self.settings.repetition_penalty} if self.settings.repetition_penalty else {}
        return {
            **extra,
            "model": body.model or self.settings.model,
            "messages": build_messages(body.query, hits),
            "max_tokens": body.max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature if body.temperature is None else body.temperature,
        }

    # -- conversations ----------------------------------------------------------------
    async def condense(self, body: QueryRequest, authorization: str | None) -> Condensed:
        """The standalone question for a follow-up; the question itself without earlier turns."""
        if not body.messages:
            return Condensed(body.query, "none")
        kept, dropped = fit_history([t.model_dump() for t in body.messages], self.settings.history_chars)
        if not body.rewrite or not has_user_turn(kept):
            condensed = Condensed(body.query, "none", turns_used=len(kept), dropped_turns=dropped)
        else:
            request = {
                "model": body.model or self.settings.model,
                "messages": condense_messages(kept, body.query),
                "max_tokens": self.settings.rewrite_max_tokens,
                "temperature": 0.0,
            }
            reply = await self.chat.complete(authorization, request)
            rewrite = clean_rewrite(_reply_text(reply))
            if accept_rewrite(rewrite, body.query, kept):
                condensed = Condensed(rewrite, "model", rewrite, len(kept), dropped)
            else:
                condensed = Condensed(history_query(body.query, kept), "history", rewrite, len(kept), dropped)
        self.metrics.rewrites.labels(method=condensed.method).inc()
        return condensed

    async def _standalone(self, body: QueryRequest, authorization: str | None):
        """The request with its standalone question, and the ``Condensed`` (None without turns)."""
        if not body.messages:
            return body, None
        condensed = await self.condense(body, authorization)
        return body.model_copy(update={"query": condensed.query}), condensed

    def _answer(self, body: QueryRequest, answer: str, hits, grounded: bool, info, usage=None, turns=None):
        citations = cite(answer, hits) if grounded else []
        return {
            "object": "rag.answer",
            "collection": body.collection,
            "model": body.model or self.settings.model,
            "answer": answer,
            "grounded": grounded,
            "citations": citations,
            # Share of answer sentences supported by a cited chunk (0 when nothing is cited).
            "faithfulness": round(faithfulness(answer, [c["text"] for c in citations]), 4) if grounded else None,
            # Each answer sentence with the sources it cites and whether one of them holds it.
            "claims": claims(answer, hits) if grounded else [],
            "sources": [{"index": n, **h.to_dict()} for n, h in enumerate(hits, start=1)],
            "usage": usage,
            "info": info,
            # With earlier turns: the standalone question used, how it was made, turns left out.
            **({"conversation": turns.to_dict()} if turns is not None else {}),
        }

    async def _retrieve_expanded(self, body: QueryRequest, authorization: str | None):
        """``retrieve``, or with ``expand`` the question and the model's rephrasings of it, fused."""
        n = self.settings.expand if body.expand is None else body.expand
        if not n:
            return await self.retrieve(body, authorization)
        request = {
            "model": body.model or self.settings.model,
            "messages": expansion_messages(body.query, n),
            "max_tokens": self.settings.expand_max_tokens,
            "temperature": 0.0,
        }
        reply = await self.chat.complete(authorization, request)
        variants = parse_variants(_reply_text(reply), body.query, n)
        results = [await self.retrieve(body, authorization)]
        if not variants:  # nothing new to search: the question's own results, as they are
            return results[0][0], {**results[0][1], "expansions": []}
        for variant in variants:
            results.append(await self.retrieve(body.model_copy(update={"query": variant}), authorization))
        hits = fuse_hits([h for h, _ in results], results[0][1]["top_k"])
        return hits, fuse_info([i for _, i in results], variants)

    async def query(self, body: QueryRequest, authorization: str | None) -> dict[str, Any]:
        body, turns = await self._standalone(body, authorization)
        hits, info = await self._retrieve_expanded(body, authorization)
        if not self._relevant(hits, info):
            self.metrics.queries.labels(collection=body.collection, outcome="unknown").inc()
            return self._answer(body, NO_ANSWER.format(collection=body.collection), [], False, info, turns=turns)
        hits = fit_context(hits, self.settings.context_chars)
        try:
            reply = await self.chat.complete(authorization, self._generation(body, hits))
        except LatheError:
            self.metrics.queries.labels(collection=body.collection, outcome="failed").inc()
            raise
        answer = _reply_text(reply)
        answer = cut_repetition(answer)
        self.metrics.queries.labels(collection=body.collection, outcome="answered").inc()
        return self._answer(body, answer.strip(), hits, True, info, reply.get("usage"), turns)

    async def query_stream(self, body: QueryRequest, authorization: str | None) -> AsyncIterator[bytes]:
        """SSE: ``sources``, then ``delta`` events, then the whole ``answer``; ``error`` on failure."""
        try:
            body, turns = await self._standalone(body, authorization)
            hits, info = await self._retrieve_expanded(body, authorization)
            relevant = self._relevant(hits, info)
            hits = fit_context(hits, self.settings.context_chars)
            shown = hits if relevant else []
            sources = {"sources": [{"index": n, **h.to_dict()} for n, h in enumerate(shown, 1)]}
            expansions = {"expansions": info["expansions"]} if "expansions" in info else {}
            yield _event("sources", {**sources, **expansions, **({"conversation": turns.to_dict()} if turns else {})})
            if not relevant:
                answer = NO_ANSWER.format(collection=body.collection)
                yield _event("delta", {"content": answer})
                self.metrics.queries.labels(collection=body.collection, outcome="unknown").inc()
                yield _event("answer", self._answer(body, answer, [], False, info, turns=turns))
            else:
                parts: list[str] = []
                async for delta in self.chat.stream(authorization, self._generation(body, hits)):
                    parts.append(delta)
                    yield _event("delta", {"content": delta})
                    if delta.rstrip().endswith((".", "!", "?")) and cut_repetition("".join(parts)) != "".join(parts):
                        break  # the model started saying it again: stop generating
                self.metrics.queries.labels(collection=body.collection, outcome="answered").inc()
                answer = cut_repetition("".join(parts).strip())
                yield _event("answer", self._answer(body, answer, hits, True, info, turns=turns))
        except LatheError as exc:
            self.metrics.queries.labels(collection=body.collection, outcome="failed").inc()
            yield _event("error", exc.to_openai())
        yield b"data: [DONE]\n\n"


def _reply_text(reply: dict[str, Any]) -> str:
    """A chat completion's first answer, empty when it has none."""
    return ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""


def _run(coroutine):
    """Run a coroutine that does blocking work to completion inside a worker thread."""
    return asyncio.run(coroutine)


def _wire_vector(vector, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
