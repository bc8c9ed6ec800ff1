"""Admin routes (admin key only): keys, usage, canary weights, routes."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, Query, Request

from lathe.dashboards.variables import parse_duration
from lathe.errors import InvalidRequestError
from services.gateway import audit
from services.gateway.deps import AdminOnly, KeyStoreDep, RouterDep, parse_body, read_json
from services.gateway.keys import utcnow
from services.gateway.schemas import CanaryUpdate, KeyCreate, openapi_body

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminOnly])


@router.post("/keys", status_code=201, openapi_extra=openapi_body(KeyCreate))
async def create_key(request: Request, keys: KeyStoreDep) -> dict:
    body = parse_body(KeyCreate, await read_json(request, 65536))
    expires = None
    if body.expires_at:
        try:
            expires = dt.datetime.fromisoformat(body.expires_at)
            if expires.tzinfo is not None:
                # Near year 1 or 9999 the shift to UTC leaves the calendar: OverflowError.
                expires = expires.astimezone(dt.UTC).replace(tzinfo=None)
        except (ValueError, OverflowError):
            raise InvalidRequestError("expires_at must be an ISO date, e.g. 2027-01-31", param="expires_at") from None
    raw, info = await asyncio.to_thread(
        keys.create,
        body.name,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        budget=body.budget,
        max_tokens=body.max_tokens,
        tools=body.tools,
        expires_at=expires,
        guardrails=[g.model_dump() for g in body.guardrails],
    )
    return {**info.to_dict(), "key": raw}


def parse_since(text: str) -> dt.datetime:
    """``30m``/``2h``/``7d`` back from now, or an ISO time; naive UTC, as the database keeps times."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return utcnow() - dt.timedelta(seconds=parse_duration(text, "since"))
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


@router.get("/audit")
async def audit_log(
    keys: KeyStoreDep,
    since: str = Query("1h", description="a duration back from now (30m, 2h, 7d) or an ISO time"),
    key: str | None = Query(None, description="a key's name or id"),
    limit: int = Query(1000, ge=1, le=100_000),
) -> dict:
    """The audit log's rows since then, oldest first: who, model and version, tokens, guardrails, status."""
    return {"data": await asyncio.to_thread(audit.query, keys, parse_since(since), key, limit)}


@router.get("/keys")
async def list_keys(keys: KeyStoreDep) -> dict:
    return {"data": [k.to_dict() for k in await asyncio.to_thread(keys.list)]}


@router.delete("/keys/{name}")
async def revoke_key(name: str, request: Request, keys: KeyStoreDep) -> dict:
    info = await asyncio.to_thread(keys.revoke, name)
    request.app.state.key_cache.clear()
    return info.to_dict()


@router.get("/keys/{name}/usage")
async def key_usage(name: str, request: Request, keys: KeyStoreDep) -> dict:
    await request.app.state.usage.flush()
    return await asyncio.to_thread(keys.usage, name)


@router.post("/canary", openapi_extra=openapi_body(CanaryUpdate))
async def set_canary(request: Request, router_: RouterDep) -> dict:
    body = parse_body(CanaryUpdate, await read_json(request, 65536))
    weights = router_.set_canary(body.model, body.version, body.weight)
    return {"model": body.model, "weights": weights}


@router.get("/routes")
async def routes(router_: RouterDep) -> dict:
    """Every backend; ``weight`` is its version's share now (a canary or rollout included)."""
    return {
        model: [
            {
                "url": b.url,
                "version": b.version,
                "weight": pool.versions().get(b.version, b.weight),
                "healthy": b.healthy,
                "breaker": b.breaker.state,
                "outstanding": b.outstanding,
            }
            for b in pool.backends
        ]
        for model, pool in router_.pools.items()
    }
