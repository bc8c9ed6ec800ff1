"""The inference service's FastAPI app: ``create_app(settings)``; no work at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from lathe import tracing
from lathe.http_service import install_error_handlers
from lathe.registry import ModelRegistry
from lathe.telemetry import RequestIdMiddleware
from services.inference.adapters import AdapterSet
from services.inference.alias_server import AliasServer, EngineFactory
from services.inference.metrics import InferenceMetrics
from services.inference.routes import health, openai
from services.inference.settings import InferenceServiceSettings

log = logging.getLogger(__name__)


def create_app(settings: InferenceServiceSettings, engine_factory: EngineFactory | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = InferenceMetrics.create()
        registry = ModelRegistry(settings.mlflow.uri, timeout_s=settings.mlflow.request_timeout_s)
        server = AliasServer(settings, registry, metrics, engine_factory)
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.server = server
        app.state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0), event_hooks=tracing.httpx_hooks()
        )
        if settings.adapters:
            server.adapters = AdapterSet(settings, registry, metrics, app.state.http)
        loop_task = asyncio.create_task(server.run(), name="alias-server")
        try:
            yield
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            await server.shutdown()
            await app.state.http.aclose()

    telemetry = tracing.install("inference", settings.tracing)
    app = FastAPI(title="Lathe inference", version="0.1.0", lifespan=lifespan, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(openai.router)
    install_error_handlers(app)
    return app
