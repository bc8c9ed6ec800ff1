"""The relay to the RAG and agent services behind the gateway: ``/v1/rag/...`` and ``/v1/agents/...``.

Same keys and quotas as the OpenAI routes: the caller is authenticated here, each
request takes one from the key's requests-per-minute, and the caller's key travels on
so the service generates through the gateway under that same key (its tokens count
against the same quota). The gateway tells the service who called and which agent
tools the key may use; headers of that name from the client are dropped, never
trusted.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from yarl import URL

from lathe import tracing
from lathe.errors import EngineUnavailableError, InvalidRequestError, NotFoundError
from lathe.telemetry import REQUEST_ID_HEADER, request_id_var
from services.gateway.deps import CurrentKey, SettingsDep, read_body
from services.gateway.keys import KeyInfo
from services.gateway.quotas import Limits, RateLimitedError

router = APIRouter(tags=["services"])

_PASS_HEADERS = ("authorization", "content-type", "accept")
_RETURN_HEADERS = ("content-type", "cache-control")
_METHODS = ["GET", "POST", "DELETE"]
# What a query string may carry as it is; anything else is percent-encoded on the way.
_QUERY_SAFE = "/?:@!$&'()*+,;=%"


@router.api_route("/v1/rag/{path:path}", methods=_METHODS, include_in_schema=False)
async def rag(request: Request, key: CurrentKey, settings: SettingsDep) -> Response:
    return await _relay(request, key, settings.rag_url, "rag", settings)


@router.api_route("/v1/agents", methods=["GET"], include_in_schema=False)
async def agents(request: Request, key: CurrentKey, settings: SettingsDep) -> Response:
    return await _relay(request, key, settings.agent_url, "agents", settings)


@router.api_route("/v1/agents/{path:path}", methods=_METHODS, include_in_schema=False)
async def agent_runs(request: Request, key: CurrentKey, settings: SettingsDep) -> Response:
    return await _relay(request, key, settings.agent_url, "agents", settings)


async def _relay(request: Request, key: KeyInfo, base: str | None, route: str, settings) -> Response:
    if not base:
        raise NotFoundError(f"the {route} service is not enabled on this gateway")
    # The whole path, not the route's {path} parameter: Starlette's pattern stops short
    # of a trailing newline. It arrives percent-decoded: "%2e%2e" is ".." by now and
    # "%3F" is "?". Sent on as it is, the upstream URL would climb out of the service's
    # prefix (to its /metrics, say) or grow a query the client never wrote.
    path = request.scope["path"]
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidRequestError("the path may not have '.' or '..' segments")
    url = base.rstrip("/") + quote(path, safe="/")
    if request.url.query:
        url += "?" + quote(request.url.query, safe=_QUERY_SAFE)
    url = URL(url, encoded=True)
    forwarder = request.app.state.forwarder
    metrics = request.app.state.metrics
    try:
        reservation = await forwarder.limiter.reserve(key.id, 0, Limits(rpm=key.rpm, budget=key.budget))
    except RateLimitedError:
        metrics.rate_limited.labels(key=key.name, reason="rate").inc()
        raise
    await forwarder.limiter.reconcile(reservation, 0)
    body = await read_body(request, settings.service_max_body_bytes)
    headers = {name: request.headers[name] for name in _PASS_HEADERS if name in request.headers}
    headers["x-lathe-key-name"] = key.name
    headers["x-lathe-allowed-tools"] = ",".join(key.tools) if key.tools else "*"
    if request_id := request_id_var.get():
        headers[REQUEST_ID_HEADER] = request_id
    tracing.inject(headers)
    started = time.monotonic()
    try:
        upstream = await forwarder.http.request(request.method, url, data=body or None, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        metrics.requests.labels(model="-", route=route, status="503").inc()
        raise EngineUnavailableError(f"the {route} service cannot be reached ({type(exc).__name__})") from None
    returned = {k: upstream.headers[k] for k in _RETURN_HEADERS if k in upstream.headers}
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):

        async def relay():
            try:
                async for piece in upstream.content.iter_any():
                    yield piece
            except (aiohttp.ClientError, TimeoutError):
                yield (
                    b'event: error\ndata: {"error": {"message": "the service stopped mid-stream", '
                    b'"type": "server_error", "param": null, "code": "upstream_error"}}\n\n'
                )
            finally:
                upstream.close()
                _observe(metrics, route, upstream.status, started)

        return StreamingResponse(relay(), status_code=upstream.status, headers=returned)
    try:
        content = await upstream.read()
    finally:
        upstream.release()
    _observe(metrics, route, upstream.status, started)
    return Response(content, status_code=upstream.status, headers=returned)


def _observe(metrics, route: str, status: int, started: float) -> None:
    metrics.requests.labels(model="-", route=route, status=str(status)).inc()
    metrics.latency.labels(model="-", route=route).observe(time.monotonic() - started)
