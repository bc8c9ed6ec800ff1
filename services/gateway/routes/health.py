"""Liveness (``/health``) and readiness (``/ready``: some backend can take traffic)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.gateway.deps import RouterDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(router: RouterDep) -> JSONResponse:
    models = {model: any(b.available() for b in pool.backends) for model, pool in router.pools.items()}
    ok = any(models.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "models": models}, status_code=200 if ok else 503)
