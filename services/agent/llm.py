"""Chat completions through the gateway, with the caller's own key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from lathe.errors import UpstreamError


class ModelCallError(UpstreamError):
    """The gateway refused or failed a generation; the run records it and stops."""


@dataclass
class Completion:
    message: dict[str, Any]
    usage: dict[str, Any] | None
    finish_reason: str | None


class GatewayChat:
    def __init__(self, http: httpx.AsyncClient, gateway_url: str) -> None:
        self.http = http
        self.url = gateway_url.rstrip("/") + "/v1/chat/completions"

    async def complete(
        self, body: dict[str, Any], *, authorization: str | None, request_id: str | None, timeout_s: float
    ) -> Completion:
        headers = {}
        if authorization:
            headers["authorization"] = authorization
        if request_id:
            headers["x-request-id"] = request_id
        try:
            response = await self.http.post(self.url, json=body, headers=headers, timeout=timeout_s)
        except httpx.TimeoutException:
            raise ModelCallError(f"the model did not answer within {timeout_s:.0f} s") from None
        except httpx.HTTPError as exc:
            raise ModelCallError(f"the gateway cannot be reached at {self.url}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ModelCallError(f"the gateway answered {response.status_code}: {_error_message(response)}")
        try:
            data = response.json()
            choice = data["choices"][0]
            message = dict(choice["message"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelCallError("the gateway answered something that is not a chat completion") from None
        return Completion(message=message, usage=data.get("usage"), finish_reason=choice.get("finish_reason"))


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300] or response.reason_phrase
