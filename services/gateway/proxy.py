"""Forward one OpenAI request to a backend: admission, retries, caches, streaming, accounting.

``Forwarder.admit`` (services/gateway/admission.py) checks a request and reserves its tokens
and cost; ``Forwarder.forward`` is the rest of its life: pick a backend, answer from a
response cache where the key has one, send it (retrying on another backend only while
nothing has reached the client), relay the answer (SSE event by event, in
services/gateway/streaming.py) and settle the reservation with the real usage and cost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from fastapi.responses import JSONResponse, Response

from lathe import tracing
from lathe.errors import (
    EngineUnavailableError,
    UpstreamError,
)
from lathe.telemetry import REQUEST_ID_HEADER, log_fields, request_id_var
from services.gateway.admission import Admission, Admitter
from services.gateway.cache import Entry, ResponseCache
from services.gateway.metrics import GatewayMetrics
from services.gateway.quotas import (
    QuotaLimiter,
)
from services.gateway.recorder import UsageRecorder
from services.gateway.routing import Backend, Router
from services.gateway.screening import GuardrailBook
from services.gateway.settings import GatewayServiceSettings
from services.gateway.spend import MICRO, Price
from services.gateway.streaming import StreamRelay
from services.gateway.tokens import PromptCounter

log = logging.getLogger(__name__)

BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class Forwarder(Admitter, StreamRelay):
    def __init__(
        self,
        settings: GatewayServiceSettings,
        router: Router,
        limiter: QuotaLimiter,
        usage: UsageRecorder,
        metrics: GatewayMetrics,
        http: aiohttp.ClientSession,
        guardrails: GuardrailBook | None = None,
        prices: dict[str, Price] | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.limiter = limiter
        self.usage = usage
        self.metrics = metrics
        self.http = http
        self.rollouts = None  # a RolloutController, when the app runs one
        self.counter: PromptCounter | None = None  # exact prompt counts, when the app has one
        self.guardrails = guardrails or GuardrailBook(settings.guardrails, {}, metrics)
        self.prices = prices if prices is not None else dict(settings.prices)
        self.cache: ResponseCache | None = None  # the response caches keys opt into, when the app has them

    # -- forwarding -----------------------------------------------------------------
    async def forward(self, admission: Admission, path: str, body: dict[str, Any], stream: bool) -> Response:
        started = time.monotonic()
        last_error: Exception | None = None
        first = True
        for backend in self._candidates(admission, _routing_key(body)):
            if first and (cached := await self._from_cache(admission, backend.version, body, stream, started)):
                return cached
            first = False
            payload = dict(body, model=self.router.upstream_model(admission.model, backend))
            if admission.max_tokens is not None:
                payload["max_tokens"] = admission.max_tokens
                payload.pop("max_completion_tokens", None)
            client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if stream:
                payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            attempt = time.monotonic()
            try:
                upstream = await self._send(backend, path, payload)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = exc
                self._failed(backend, type(exc).__name__, model=admission.model)
                continue  # nothing reached the client: another backend may serve it
            self.metrics.provider_requests.labels(provider=backend.provider, status=str(upstream.status)).inc()
            if upstream.status >= 500:
                backend.outstanding -= 1
                upstream.release()
                last_error = UpstreamError(f"backend answered {upstream.status}")
                self._failed(backend, f"http_{upstream.status}", model=admission.model)
                continue
            self.metrics.by_version.labels(model=admission.model, version=backend.version).inc()
            if admission.audit is not None:
                admission.audit.version = backend.version
            if self.rollouts is not None and backend.model == admission.model:
                self.rollouts.note_request(request_id_var.get(), admission.model, backend.version)
            if stream and upstream.status == 200:
                return self._stream(admission, backend, upstream, started, client_wants_usage, attempt)
            return await self._complete(admission, backend, upstream, started, attempt, body)
        await self.settle(admission, 0, 0, 503)
        detail = f" (last error: {type(last_error).__name__})" if last_error else ""
        raise EngineUnavailableError(f"no backend could serve model {admission.model!r}{detail}")

    def _candidates(self, admission: Admission, routing_key: str) -> Iterator[Backend]:
        """Backends to try in turn, each once: up to ``retries + 1`` of the model's own, then of each
        fallback model's. A backend whose breaker is open is skipped at once."""
        tried: set[str] = set()
        base = self.router.adapters.get(admission.model)  # an adapter: served by its base's backends
        for pool in self.router.chain(admission.model):
            adapter = admission.model if pool.model == base else None
            for _ in range(self.settings.retries + 1):
                try:
                    backend = pool.choose(routing_key, exclude=tried, sticky=admission.sticky, adapter=adapter)
                except EngineUnavailableError:
                    break
                tried.add(backend.url)
                if pool.model != (base or admission.model):
                    self.metrics.fallbacks.labels(model=admission.model, fallback=pool.model).inc()
                    log.warning("fallback", extra=log_fields(model=admission.model, fallback=pool.model))
                yield backend

    async def _from_cache(
        self, admission: Admission, version: str, body: dict[str, Any], stream: bool, started: float
    ) -> Response | None:
        """The answer cached for the version the request was routed to, for a key that opted in;
        on a miss, the admission keeps the lookup its answer is stored under."""
        key = admission.key
        if self.cache is None or stream or not key.cache or admission.route not in ("chat", "completions"):
            return None
        entry, kind, admission.lookup = await self.cache.lookup(key, admission.model, version, body)
        if admission.audit is not None:
            admission.audit.cache_hit, admission.audit.version = entry is not None, version
        if entry is None:
            return None
        counted = self.settings.cache_hits_count_tokens
        await self.settle(admission, entry.prompt_tokens * counted, entry.completion_tokens * counted, 200)
        self._observe(admission, 200, started)
        return JSONResponse(entry.data, headers={"x-lathe-backend-version": version, "x-lathe-cache": kind})

    async def _send(self, backend: Backend, path: str, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        # aiohttp rather than httpx upstream: httpx's pool checks every pooled connection
        # on every request, which costs more than the rest of the gateway together.
        backend.breaker.on_attempt()
        backend.outstanding += 1
        headers = {"content-type": "application/json", **backend.headers}
        if request_id := request_id_var.get():
            headers[REQUEST_ID_HEADER] = request_id
        try:
            b = backend
            with tracing.client_span(path, headers, url=b.url, provider=b.provider, version=b.version):
                return await self.http.post(backend.url + path, data=json.dumps(payload).encode(), headers=headers)
        except BaseException:
            backend.outstanding -= 1
            raise

    async def _complete(
        self,
        admission: Admission,
        backend: Backend,
        upstream: aiohttp.ClientResponse,
        started: float,
        attempt: float,
        body: dict[str, Any],
    ) -> Response:
        try:
            content = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._failed(backend, type(exc).__name__, model=admission.model)
            await self.settle(admission, 0, 0, 502)
            raise UpstreamError(f"backend failed while answering: {type(exc).__name__}") from None
        finally:
            backend.outstanding -= 1
            upstream.release()
        self._succeeded(backend)
        try:
            data = json.loads(content)
        except ValueError:
            await self.settle(admission, 0, 0, 502)
            raise UpstreamError("backend answered with something that is not JSON") from None
        usage = data.get("usage") or {} if isinstance(data, dict) else {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        if isinstance(data, dict) and upstream.status == 200:
            data["model"] = admission.model
            if admission.screen is not None:
                admission.screen.answer(data)
            self._served(admission.model, backend.version, time.monotonic() - attempt, None)
            if admission.lookup is not None and self.cache is not None:
                await self.cache.store(admission.lookup, Entry(data, prompt, completion, time.monotonic() - attempt))
            if self.rollouts is not None and admission.route == "chat":
                self.rollouts.maybe_judge(self.http, admission.model, backend.version, body, data)
        await self.settle(admission, prompt, completion, upstream.status)
        self._observe(admission, upstream.status, started)
        return JSONResponse(data, status_code=upstream.status, headers=backend.answer_headers())

    # -- accounting -----------------------------------------------------------------
    async def settle(self, admission: Admission, prompt: int, completion: int, status: int) -> None:
        if admission.reservation is not None and admission.reservation.settled:
            return
        cost = admission.price.cost_micro(prompt, completion) if admission.price is not None else 0
        await self.limiter.reconcile(admission.reservation, prompt + completion, cost)
        key, model = admission.key, admission.model
        if prompt or completion:
            self.metrics.tokens.labels(key=key.name, model=model, direction="in").inc(prompt)
            self.metrics.tokens.labels(key=key.name, model=model, direction="out").inc(completion)
        if cost:
            self.metrics.spend.labels(team=key.team or "", key=key.name, model=model).inc(cost / MICRO)
        audit = admission.audit
        if audit is not None:
            audit.prompt_tokens, audit.completion_tokens, audit.status = prompt, completion, status
            audit.spend = cost / MICRO if admission.price is not None else None
            audit.latency_ms = round((time.monotonic() - audit.started) * 1000, 1)
        self.usage.add(key.id, model, prompt, completion, status, audit, cost_micro=cost, team=key.team)

    def _observe(self, admission: Admission, status: int, started: float) -> None:
        self.metrics.requests.labels(model=admission.model, route=admission.route, status=str(status)).inc()
        self.metrics.latency.labels(model=admission.model, route=admission.route).observe(time.monotonic() - started)

    def _served(self, model: str, version: str, ttft_s: float | None, itl_s: float | None) -> None:
        """A version answered: its latency series, and the rollout's window."""
        # Its error series starts at 0, so an error rate reads 0 rather than nothing.
        self.metrics.version_errors.labels(model=model, version=version)
        if ttft_s is not None:
            self.metrics.version_ttft.labels(model=model, version=version).observe(ttft_s)
        if itl_s is not None:
            self.metrics.version_itl.labels(model=model, version=version).observe(itl_s)
        if self.rollouts is not None:
            self.rollouts.observe(model, version, True, ttft_s, itl_s)

    def _failed(self, backend: Backend, kind: str, trip: bool = False, model: str | None = None) -> None:
        if model is not None:
            self.metrics.version_errors.labels(model=model, version=backend.version).inc()
            if self.rollouts is not None:
                self.rollouts.observe(model, backend.version, False)
        if trip:
            backend.breaker.trip()
        else:
            backend.breaker.on_failure()
        self.metrics.upstream_errors.labels(backend=backend.url, kind=kind).inc()
        self.metrics.breaker_state.labels(backend=backend.url).set(BREAKER_VALUE[backend.breaker.state])
        log.warning("backend failed", extra=log_fields(backend=backend.url, kind=kind))

    def _succeeded(self, backend: Backend) -> None:
        backend.breaker.on_success()
        self.metrics.breaker_state.labels(backend=backend.url).set(0)


def _routing_key(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return json.dumps(messages[:2], sort_keys=True)[:512]
    return str(body.get("prompt") or body.get("input") or "")[:512]
