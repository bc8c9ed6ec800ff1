"""Relaying a streamed answer: Server-Sent Events from the backend to the client, one by one.

``StreamRelay._stream`` is ``Forwarder``'s streaming half: it reads usage from the events,
drops the usage-only event a client did not ask for, lets the answer's guardrails watch
each piece, and ends the stream with an OpenAI-shaped error event when the backend breaks
off or a guardrail stops it. Settling the reservation and the metrics are the
``Forwarder``'s (services/gateway/proxy.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from fastapi.responses import StreamingResponse

from lathe.errors import UpstreamError
from services.gateway.guardrails import GuardrailBlockedError
from services.gateway.screening import StreamWatch

if TYPE_CHECKING:
    from services.gateway.admission import Admission
    from services.gateway.routing import Backend


class StreamRelay:
    def _stream(
        self,
        admission: Admission,
        backend: Backend,
        upstream: aiohttp.ClientResponse,
        started: float,
        client_wants_usage: bool,
        attempt: float,
    ) -> StreamingResponse:
        state = {"prompt": 0, "completion": 0, "chunks": 0, "done": False, "error": None, "blocked": None}
        watch = admission.screen.stream() if admission.screen is not None else None
        marks: list[float] = []  # when the first and the latest token events came

        async def relay() -> AsyncIterator[bytes]:
            buffer = b""
            first = True
            status = 200
            try:
                async for piece in upstream.content.iter_any():
                    buffer += piece
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        keep = self._inspect_event(event, state, admission.model, client_wants_usage, watch)
                        if state["blocked"]:
                            break
                        if keep is None:
                            continue
                        now = time.monotonic()
                        if first:
                            self.metrics.ttft.labels(model=admission.model).observe(now - started)
                            first = False
                        marks[min(len(marks), 1) :] = [now]
                        yield keep + b"\n\n"
                    if state["blocked"]:
                        break
                if state["blocked"]:
                    # A guardrail stopped the answer: the client gets an error event, not the rest.
                    status = GuardrailBlockedError.status_code
                    message = f"the answer was stopped by the {state['blocked']} guardrail"
                    yield error_event(message, GuardrailBlockedError.code)
                    return
                if buffer.strip():
                    yield buffer
                if watch is not None:
                    watch.passed()
                if state["error"] is None:
                    self._succeeded(backend)
                    ttft = marks[0] - attempt if marks else None
                    events = state["chunks"]
                    itl = (marks[1] - marks[0]) / (events - 1) if len(marks) > 1 and events > 1 else None
                    self._served(admission.model, backend.version, ttft, itl)
                else:
                    # The backend ended the stream with an error event (already relayed).
                    # One whose own upstream broke off (an inference service whose engine
                    # died) is down, like a backend that breaks the connection.
                    status = 502
                    trip = state["error"] == UpstreamError.code
                    self._failed(backend, "stream_error_event", trip=trip, model=admission.model)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The backend died mid-stream: end with an OpenAI-shaped error event.
                status = 502
                self._failed(backend, "stream_" + type(exc).__name__, trip=True, model=admission.model)
                yield error_event("the backend stopped in the middle of the stream", UpstreamError.code)
            finally:
                # Also reached when the client disconnects: closing the upstream
                # response cancels the request at the backend.
                backend.outstanding -= 1
                upstream.close()
                completion = state["completion"] or state["chunks"]
                prompt = state["prompt"] or admission.prompt_tokens_estimate
                await self.settle(admission, prompt, completion, status)
                self._observe(admission, status, started)

        headers = {**backend.answer_headers(), "cache-control": "no-cache"}
        return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)

    def _inspect_event(
        self, event: bytes, state: dict, model: str, client_wants_usage: bool, watch: StreamWatch | None = None
    ) -> bytes | None:
        """Read usage from the stream; drop the usage-only event the client did not ask for;
        note in ``state["blocked"]`` a guardrail that stops the stream here."""
        if not event.startswith(b"data:") or event.strip() == b"data: [DONE]":
            return event
        try:
            data = json.loads(event[5:])
        except ValueError:
            return event
        if not isinstance(data, dict):
            return event
        if isinstance(data.get("error"), dict):
            state["error"] = str(data["error"].get("code") or data["error"].get("type") or "error")
            return event
        usage = data.get("usage")
        if usage:
            state["prompt"] = int(usage.get("prompt_tokens") or 0)
            state["completion"] = int(usage.get("completion_tokens") or 0)
            if not data.get("choices") and not client_wants_usage:
                return None
        if data.get("choices"):
            state["chunks"] += 1
            if watch is not None and (blocked := watch.feed(data)):
                state["blocked"] = blocked
                return None
        if "model" in data:
            data["model"] = model
            return b"data: " + json.dumps(data, separators=(",", ":")).encode()
        return event


def error_event(message: str, code: str) -> bytes:
    error = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"
