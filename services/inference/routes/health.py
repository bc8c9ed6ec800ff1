"""``/health`` for probes and ``lathe up``, ``/metrics`` for Prometheus (own + vLLM's)."""

from __future__ import annotations

import contextlib

import httpx
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from lathe.telemetry import render_metrics
from services.inference.deps import HttpDep, MetricsDep, ServerDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(server: ServerDep, settings: SettingsDep) -> JSONResponse:
    status = server.status()
    body = {
        "status": status,
        "model": settings.model_name,
        "alias": settings.alias,
        "version": server.version,
        "engine_pid": server.active.handle.pid if server.active else None,
        "engine_url": server.active.handle.base_url if server.active else None,
        "registry": "ok" if server.registry_ok else "unreachable",
        "swaps": server.swaps,
        "engine_restarts": server.restarts,
        "detail": server.detail,
        "last_error": server.last_error,
    }
    if server.adapters is not None:
        body["adapters"] = server.adapters.describe(server.active.handle if server.active else None)
    # degraded (the engine died and is restarting) is 503 too: no request can be served.
    return JSONResponse(body, status_code=200 if status == "ok" else 503)


@router.get("/metrics")
async def metrics(server: ServerDep, metrics: MetricsDep, http: HttpDep) -> Response:
    own, content_type = render_metrics(metrics.registry)
    engine_text = b""
    if server.active is not None and not server.active.exited():
        # The engine's own metrics are a bonus; ours must be served even when it does not answer.
        with contextlib.suppress(httpx.HTTPError):
            upstream = await http.get(server.active.handle.base_url + "/metrics", timeout=5.0)
            if upstream.status_code == 200:
                engine_text = upstream.content
    return Response(own + engine_text, media_type=content_type)
