"""The OpenAI API, proxied to the engine serving the alias.

Responses stream through chunk by chunk (SSE stays SSE). A request holds its engine
until its last byte, which is what lets a swap drain the old engine safely.
"""

from __future__ import annotations

import json
import time

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from lathe.errors import UpstreamError
from lathe.telemetry import REQUEST_ID_HEADER, request_id_var
from services.inference.deps import HttpDep, MetricsDep, ServerDep, SettingsDep

router = APIRouter(prefix="/v1", tags=["openai"])

_PASS_HEADERS = ("content-type", "cache-control")
_MID_STREAM_ERROR = (
    b'data: {"error": {"message": "engine stopped mid-stream", "type": "upstream_error",'
    b' "param": null, "code": "upstream_error"}}\n\n'
)


def _requested_model(body: bytes) -> object:
    """The ``model`` a request names (the engine validates the rest of the body)."""
    try:
        return json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None


@router.get("/models")
async def list_models(server: ServerDep, settings: SettingsDep, http: HttpDep) -> JSONResponse:
    handle = server.acquire()
    try:
        upstream = await http.get(handle.base_url + "/v1/models", timeout=10.0)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"engine did not answer /v1/models: {type(exc).__name__}") from None
    finally:
        server.release(handle)
    body = upstream.json()
    for entry in body.get("data", []):
        entry["lathe"] = {"version": handle.version, "alias": settings.alias, "model_uri": settings.model_uri}
    return JSONResponse(body, status_code=upstream.status_code)


@router.post("/chat/completions")
async def chat_completions(request: Request, server: ServerDep, metrics: MetricsDep, http: HttpDep) -> Response:
    return await _proxy(request, "/v1/chat/completions", server, metrics, http)


@router.post("/completions")
async def completions(request: Request, server: ServerDep, metrics: MetricsDep, http: HttpDep) -> Response:
    return await _proxy(request, "/v1/completions", server, metrics, http)


async def _proxy(request: Request, path: str, server: ServerDep, metrics: MetricsDep, http: HttpDep) -> Response:
    body = await request.body()
    started = time.monotonic()
    handle = server.acquire()
    adapter = None
    if server.adapters is not None:
        try:
            adapter = await server.prepare(handle, _requested_model(body))
        except BaseException:
            server.release(handle)
            raise
    headers = {"content-type": request.headers.get("content-type", "application/json")}
    if request_id := request_id_var.get():
        headers[REQUEST_ID_HEADER] = request_id
    upstream_request = http.build_request("POST", handle.base_url + path, content=body, headers=headers)
    try:
        upstream = await http.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        server.release(handle)
        server.finish_adapter(adapter)
        metrics.requests.labels(route=path, status="502").inc()
        raise UpstreamError(f"engine for version {handle.version} failed: {type(exc).__name__}") from None

    finished = False

    async def finish() -> None:
        # Runs from the stream's end, or as the background task when the client left
        # before the stream began; whichever comes first counts.
        nonlocal finished
        if finished:
            return
        finished = True
        await upstream.aclose()
        server.release(handle)
        server.finish_adapter(adapter)
        metrics.requests.labels(route=path, status=str(upstream.status_code)).inc()
        metrics.request_duration.labels(route=path).observe(time.monotonic() - started)

    async def relay():
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            # The engine died mid-stream: end with an error event rather than a hang.
            yield _MID_STREAM_ERROR
        finally:
            await finish()

    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() in _PASS_HEADERS}
    return StreamingResponse(
        relay(), status_code=upstream.status_code, headers=response_headers, background=BackgroundTask(finish)
    )
