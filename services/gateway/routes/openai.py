"""The OpenAI API: chat completions, completions, embeddings, models."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from services.gateway.deps import CurrentKey, ForwarderDep, RouterDep, SettingsDep, parse_body, read_json
from services.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, openapi_body

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", openapi_extra=openapi_body(ChatCompletionRequest))
async def chat_completions(
    request: Request, key: CurrentKey, forwarder: ForwarderDep, settings: SettingsDep
) -> Response:
    return await _generate(request, key, forwarder, settings, ChatCompletionRequest, "chat", "/v1/chat/completions")


@router.post("/completions", openapi_extra=openapi_body(CompletionRequest))
async def completions(request: Request, key: CurrentKey, forwarder: ForwarderDep, settings: SettingsDep) -> Response:
    return await _generate(request, key, forwarder, settings, CompletionRequest, "completions", "/v1/completions")


async def _generate(request, key, forwarder, settings, schema, route: str, path: str) -> Response:
    data = await read_json(request, settings.max_body_bytes)
    body = parse_body(schema, data)
    admission = await forwarder.admit(
        key, body.model, route, body.prompt_text(), body.requested_max_tokens(), generates=True, body=data
    )
    # A session or user keeps to one version while a canary runs.
    user = data.get("user")
    admission.sticky = request.headers.get("x-session-id") or (user if isinstance(user, str) and user else None)
    return await forwarder.forward(admission, path, data, stream=body.stream)


@router.post("/embeddings", openapi_extra=openapi_body(EmbeddingRequest))
async def embeddings(request: Request, key: CurrentKey, forwarder: ForwarderDep, settings: SettingsDep) -> Response:
    data = await read_json(request, settings.max_body_bytes)
    body = parse_body(EmbeddingRequest, data)
    admission = await forwarder.admit(key, body.model, "embeddings", body.prompt_text(), None, generates=False)
    return await forwarder.forward(admission, "/v1/embeddings", data, stream=False)


@router.get("/models")
async def list_models(key: CurrentKey, router: RouterDep) -> dict:
    now = int(time.time())
    data = [
        {
            "id": model,
            "object": "model",
            "created": now,
            "owned_by": "lathe",
            "lathe": {"versions": pool.versions(), "backends": len(pool.backends)},
        }
        for model, pool in sorted(router.pools.items())
        if key.allows_model(model)
    ]
    adapters = sorted((name, model) for name, model in router.adapters.items() if key.allows_model(name))
    data += [
        {"id": name, "object": "model", "created": now, "owned_by": "lathe", "parent": model}
        for name, model in adapters
    ]
    return {"object": "list", "data": data}
