"""Liveness (``/health``) and Prometheus metrics (``/metrics``) on the service port."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from lathe.telemetry import render_metrics

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.app.state.metrics.registry)
    return Response(body, media_type=content_type)
