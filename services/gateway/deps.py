"""Request dependencies: settings, the forwarder, and who is calling."""

from __future__ import annotations

import hmac
import json
import re
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from lathe.errors import AuthenticationError, InvalidRequestError, PayloadTooLargeError, PermissionDeniedError
from services.gateway.keys import KeyCache, KeyInfo, KeyStore
from services.gateway.proxy import Forwarder
from services.gateway.routing import Router
from services.gateway.settings import GatewayServiceSettings


def _settings(request: Request) -> GatewayServiceSettings:
    return request.app.state.settings


def _forwarder(request: Request) -> Forwarder:
    return request.app.state.forwarder


def _router(request: Request) -> Router:
    return request.app.state.router


def _keys(request: Request) -> KeyStore:
    return request.app.state.keys


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


async def _current_key(request: Request) -> KeyInfo:
    raw = _bearer(request)
    if raw is None:
        raise AuthenticationError("no API key: send it as 'Authorization: Bearer <key>'")
    cache: KeyCache = request.app.state.key_cache
    key = await cache.verify(raw)
    if key is None:
        raise AuthenticationError("invalid API key")
    if key.revoked_at is not None:
        raise AuthenticationError(f"API key {key.key_prefix}… was revoked")
    if not key.active:
        raise AuthenticationError(f"API key {key.key_prefix}… expired")
    request.state.key_name = key.name
    return key


async def _admin(request: Request) -> None:
    raw = _bearer(request)
    expected = request.app.state.admin_key
    if raw is None:
        raise AuthenticationError("no admin key: send it as 'Authorization: Bearer <key>'")
    if expected is None:
        raise PermissionDeniedError("no admin key is configured (LATHE_GATEWAY_ADMIN_KEY)")
    if not hmac.compare_digest(raw.encode(), expected.encode()):
        key = await request.app.state.key_cache.verify(raw)
        if key is not None and key.active:  # a revoked or expired key is no key at all: 401
            raise PermissionDeniedError("this route needs the admin key, not a user key")
        raise AuthenticationError("invalid admin key")


SettingsDep = Annotated[GatewayServiceSettings, Depends(_settings)]
ForwarderDep = Annotated[Forwarder, Depends(_forwarder)]
RouterDep = Annotated[Router, Depends(_router)]
KeyStoreDep = Annotated[KeyStore, Depends(_keys)]
CurrentKey = Annotated[KeyInfo, Depends(_current_key)]
AdminOnly = Depends(_admin)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing it as soon as it is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
    return bytes(body)


# Deeper than any OpenAI body (tool schemas included); far enough below Python's
# recursion limit that parsing, validating and re-serialising never hit it.
MAX_JSON_DEPTH = 64
# A \uD800-\uDFFF escape: only a lone one (not half of a pair) is worth a full check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, refusing what is too large, not UTF-8 or not JSON.

    "Not JSON" is strict RFC 8259 here, stricter than ``json.loads``: no NaN or
    Infinity, no lone surrogate escapes (they cannot be encoded again, so they would
    fail later, deep in the forwarder or the database) and no absurd nesting.
    """
    body = await read_body(request, limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("request body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidRequestError(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    # Cheap byte counts first: a body with few brackets cannot be deep.
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise InvalidRequestError(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("request body has a lone surrogate escape (\\uD800-\\uDFFF)") from None
    return data


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _depth(data: Any) -> int:
    """How deeply ``data`` nests, counted without recursion; stops once over the limit."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
