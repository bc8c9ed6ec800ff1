"""Request dependencies: settings, the runner, and the caller as the gateway describes them."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError

from lathe.errors import InvalidRequestError
from lathe.telemetry import request_id_var
from services.agent.runner import AgentRunner, Caller
from services.agent.schemas import RunRequest
from services.agent.settings import AgentServiceSettings
from services.agent.tools.registry import parse_allowlist


def _settings(request: Request) -> AgentServiceSettings:
    return request.app.state.settings


def _runner(request: Request) -> AgentRunner:
    return request.app.state.runner


def _caller(request: Request) -> Caller:
    headers = request.headers
    return Caller(
        authorization=headers.get("authorization"),
        request_id=request_id_var.get() or headers.get("x-request-id"),
        key_name=headers.get("x-lathe-key-name"),
        allowed_tools=parse_allowlist(headers.get("x-lathe-allowed-tools")),
    )


async def _run_request(request: Request) -> RunRequest:
    try:
        data: Any = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object with an 'input'")
    try:
        return RunRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequestError(f"{param}: {message}" if param else message, param=param) from None


SettingsDep = Annotated[AgentServiceSettings, Depends(_settings)]
RunnerDep = Annotated[AgentRunner, Depends(_runner)]
CallerDep = Annotated[Caller, Depends(_caller)]
RunRequestBody = Annotated[RunRequest, Depends(_run_request)]
