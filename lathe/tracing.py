"""Traces through Lathe's services: gateway → RAG → agent → inference → vLLM, one trace per request.

Off by default (``LATHE_TRACING_ENABLED``). When on:

- each service's FastAPI app records a server span per request (FastAPI's own OpenTelemetry
  support, which continues a caller's W3C ``traceparent``);
- every call a service makes to another carries the current ``traceparent`` on: httpx
  clients through ``httpx_hooks()``, the gateway's aiohttp calls through ``inject``, and the
  gateway wraps each backend call in a client span of its own (``client_span``);
- the inference service starts vLLM with ``--otlp-traces-endpoint`` so vLLM's spans join;
- spans leave by OTLP/HTTP to ``LATHE_TRACING_OTLP_ENDPOINT`` (an OpenTelemetry Collector).

``install`` sets the process's tracer provider once. A process that already has one (a test
with an in-memory exporter) keeps it. Off, every helper here costs one boolean check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from lathe.http_service import NO_OTEL
from lathe.settings import TracingSettings

# FastAPI's telemetry with request spans only: Lathe's own Prometheus metrics stay the metrics.
SPANS_ONLY = {**NO_OTEL, "tracing": True}

_enabled = False


def install(service: str, settings: TracingSettings) -> dict[str, bool]:
    """Set up tracing for this process; the ``telemetry=`` argument for its FastAPI app."""
    global _enabled
    if not settings.enabled:
        return NO_OTEL
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set yet
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"lathe-{service}"}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        trace.set_tracer_provider(provider)
    _enabled = True
    return SPANS_ONLY


def enabled() -> bool:
    return _enabled


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing headers."""
    if _enabled:
        from opentelemetry import propagate

        propagate.inject(headers)


@contextlib.contextmanager
def client_span(name: str, headers: MutableMapping[str, str], **attributes: Any) -> Iterator[None]:
    """A client span around a call to another service, its context sent on in ``headers``;
    ``attributes`` are recorded as ``lathe.<name>``."""
    if not _enabled:
        yield
        return
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer("lathe")
    named = {f"lathe.{k}": v for k, v in attributes.items()}
    with tracer.start_as_current_span(f"POST {name}", kind=trace.SpanKind.CLIENT, attributes=named):
        propagate.inject(headers)
        yield


def httpx_hooks() -> dict[str, list]:
    """Event hooks for an ``httpx.AsyncClient`` that send the current trace context on."""

    async def carry(request: Any) -> None:
        inject(request.headers)

    return {"request": [carry]}
