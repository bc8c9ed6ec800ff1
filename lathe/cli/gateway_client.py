"""The CLI's one way to call the gateway, and the way back from its errors.

Every service answers a ``LatheError`` with the error's status and OpenAI's error
object (``lathe.http_service.install_error_handlers``). ``error_from_wire`` is the inverse:
the same class (found by ``code``), message and param, so a command fails with the
service's words and the error's own exit code.

    client = GatewayClient(url, api_key)
    collections = client.call("GET", "/v1/rag/collections")
    with client.stream("POST", "/v1/agents/assistant/runs", json=body) as response:
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lathe import errors
from lathe.cli.output import settings
from lathe.errors import EngineUnavailableError, LatheError, UpstreamError

START_HINT = "start the platform with `lathe up`"


class GatewayUnreachableError(EngineUnavailableError):
    """Nothing answers at the gateway's address: the request never reached a service."""


def gateway_access(url: str | None = None, api_key: str | None = None) -> tuple[str, str | None]:
    """The gateway's base URL and the key to call it with (the CLI's own from `lathe up`; None: none)."""
    s = settings()
    base = (url or s.gateway.base_url).rstrip("/")
    key_file = s.gateway_dir / "cli_key"
    key = api_key or (key_file.read_text().strip() if key_file.exists() else None)
    return base, key


def _classes_by_code() -> dict[str, type[LatheError]]:
    """Every class of the core hierarchy by its wire ``code`` (each code names one class)."""
    found = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, LatheError)]
    return {c.code: c for c in found}


def _error_object(body: Any) -> dict[str, Any]:
    """OpenAI's ``error`` object from a body: the whole answer, or the object itself."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) and "message" in body else {}


def _as_text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    if isinstance(body, str):
        return body
    return json.dumps(body) if body is not None else ""


def error_from_wire(status: int, body: Any, *, prefix: str = "") -> LatheError:
    """The ``LatheError`` a service answered with ``status`` and ``body`` (JSON text, bytes or parsed).

    A code of the core hierarchy gives back its class, message and param; any other code
    keeps its code, type and status on a ``LatheError``. A body that is not OpenAI's
    error object becomes the message. ``prefix`` goes before the message.
    """
    error = _error_object(body)

    def field(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    message = prefix + (field("message") or _as_text(body)[:300] or f"HTTP {status}")
    cls = _classes_by_code().get(field("code") or "")
    if cls is not None:
        return cls(message, param=field("param"))
    # A service's own error (a quota, a locked store) or a body that is not Lathe's:
    # keep what it says about itself.
    unknown = LatheError(message, param=field("param"))
    unknown.status_code = status
    unknown.code = field("code") or unknown.code
    unknown.error_type = field("type") or unknown.error_type
    return unknown


class GatewayClient:
    """Requests to the gateway with a key; every failure leaves as a ``LatheError``.

    ``refused`` goes before the message of a refusal (with ``{base}`` and ``{status}``);
    ``unreachable`` and ``hint`` word a gateway that does not answer (with ``{base}``): one
    that refuses the connection, or with ``any_failure_unreachable`` any transport failure
    (a timeout too). Other transport failures are an ``UpstreamError``.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 600,
        refused: str = "",
        unreachable: str = "nothing answers at {base}",
        hint: str = START_HINT,
        any_failure_unreachable: bool = False,
    ) -> None:
        import httpx

        self.base, key = gateway_access(url, api_key)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)
        self.refused, self.unreachable, self.hint = refused, unreachable, hint
        self.any_failure_unreachable = any_failure_unreachable

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of a request's answer."""
        with self._transport():
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise self._refusal(response.status_code, response.content)
        return response.json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[Any]:
        """A streamed answer (``httpx.Response``), once its status says it is not a refusal."""
        with self._transport(), self.http.stream(method, path, **kwargs) as response:
            if response.status_code >= 400:
                raise self._refusal(response.status_code, response.read())
            yield response

    @contextmanager
    def _transport(self) -> Iterator[None]:
        import httpx

        try:
            yield
        except httpx.HTTPError as exc:
            if self.any_failure_unreachable or isinstance(exc, httpx.ConnectError):
                raise GatewayUnreachableError(self.unreachable.format(base=self.base), hint=self.hint) from None
            raise UpstreamError(f"{self.base} failed: {type(exc).__name__}") from None

    def _refusal(self, status: int, body: bytes) -> LatheError:
        return error_from_wire(status, body, prefix=self.refused.format(base=self.base, status=status))
