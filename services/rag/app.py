"""The RAG service's FastAPI app: ``create_app(settings)``; no work at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lathe import tracing
from lathe.http_service import install_error_handlers
from lathe.telemetry import RequestIdMiddleware
from services.rag.routes import collections, embeddings, query
from services.rag.settings import RagServiceSettings
from services.rag.store import StoreLockedError


def create_app(settings: RagServiceSettings, *, service=None) -> FastAPI:
    """``service`` lets a test hand in a built ``RagService`` (the real one, built once)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.rag.service import RagService

        owned = service is None
        app.state.rag = RagService.build(settings) if owned else service
        try:
            yield
        finally:
            if owned:
                await app.state.rag.close()

    telemetry = tracing.install("rag", settings.tracing)
    app = FastAPI(title="Lathe RAG", version="0.1.0", lifespan=lifespan, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        rag = request.app.state.rag
        store = rag.settings.qdrant_url or str(rag.settings.store_path)
        body = {"status": "ok", "store": store, "embedder": rag.settings.embed_model().name}
        try:
            await asyncio.to_thread(rag.store.connect)  # a local folder another process held at start
        except StoreLockedError as exc:
            unavailable = {"status": "unavailable", "code": exc.code, "detail": exc.one_line()}
            return JSONResponse({**body, **unavailable}, status_code=503)
        return JSONResponse(body)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.rag.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(collections.router)
    app.include_router(query.router)
    app.include_router(embeddings.router)
    install_error_handlers(app)
    return app
