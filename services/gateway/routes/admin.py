"""Admin routes (admin key only): keys, teams, usage, the audit log, canary weights, routes."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, Query, Request

from lathe.dashboards.variables import parse_duration
from lathe.errors import InvalidRequestError
from services.gateway import audit, spend
from services.gateway.deps import AdminOnly, ForwarderDep, KeyStoreDep, RouterDep, parse_body, read_json
from services.gateway.schemas import CanaryUpdate, KeyCreate, TeamCreate, openapi_body
from services.gateway.tables import utcnow

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminOnly])


@router.post("/keys", status_code=201, openapi_extra=openapi_body(KeyCreate))
async def create_key(request: Request, keys: KeyStoreDep, forwarder: ForwarderDep) -> dict:
    body = parse_body(KeyCreate, await read_json(request, 65536))
    team = await asyncio.to_thread(spend.get_team, keys, body.team) if body.team else None
    if body.spend_budgets or (team and team["budgets"]):
        _check_priced(body.models or list(forwarder.router.pools), forwarder.prices)
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
        team=body.team,
        spend_budgets=[b.model_dump() for b in body.spend_budgets],
        cache=sorted(set(body.cache)),
    )
    return {**info.to_dict(), "key": raw}


def _check_priced(models: list[str], prices: dict) -> None:
    """A key with a money budget may only use models that have a price: refuse it here, not per request."""
    unpriced = [m for m in models if m not in prices]
    if unpriced:
        raise InvalidRequestError(
            f"model {unpriced[0]!r} has no price, and a key with a spend budget may use it: give it a price "
            "(the routes file's price: or LATHE_GATEWAY_PRICES) or limit the key's models",
            param="models",
        )


@router.post("/teams", status_code=201, openapi_extra=openapi_body(TeamCreate))
async def create_team(request: Request, keys: KeyStoreDep) -> dict:
    body = parse_body(TeamCreate, await read_json(request, 65536))
    return await asyncio.to_thread(spend.create_team, keys, body.name, [b.model_dump() for b in body.budgets])


@router.get("/teams")
async def list_teams(keys: KeyStoreDep) -> dict:
    return {"data": await asyncio.to_thread(spend.list_teams, keys)}


@router.get("/teams/{name}/usage")
async def team_usage(name: str, request: Request, keys: KeyStoreDep) -> dict:
    """A team's requests, tokens and spend by model, its spend per period and its budgets' use."""
    await request.app.state.usage.flush()
    team = await asyncio.to_thread(spend.get_team, keys, name)
    report = await asyncio.to_thread(spend.spend_report, keys, "team", name, team["budgets"], utcnow())
    return {
        "team": name,
        "requests": sum(r["requests"] for r in report["by_model"]),
        "total_tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in report["by_model"]),
        **report,
    }


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
