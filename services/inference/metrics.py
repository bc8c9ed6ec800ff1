"""The inference service's own metrics (``lathe_inference_*``), on a private registry.

vLLM's metrics (``vllm:*``) are appended to ``/metrics`` by the health route, so one
scrape sees both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lathe.telemetry import new_registry


@dataclass
class InferenceMetrics:
    registry: CollectorRegistry
    model_version: Gauge
    swaps: Counter
    swap_duration: Histogram
    engine_up: Gauge
    engine_restarts: Counter
    registry_errors: Counter
    requests: Counter
    request_duration: Histogram
    inflight: Gauge
    adapter_requests: Counter
    adapter_inflight: Gauge
    adapter_queued: Counter
    adapter_version: Gauge
    adapter_loads: Counter
    adapter_evictions: Counter
    adapters_loaded: Gauge

    @classmethod
    def create(cls) -> InferenceMetrics:
        registry = new_registry()
        return cls(
            registry=registry,
            model_version=Gauge(
                "lathe_inference_model_version",
                "Registered version being served",
                ["model", "alias"],
                registry=registry,
            ),
            swaps=Counter(
                "lathe_inference_swaps_total", "Model version swaps by outcome", ["model", "outcome"], registry=registry
            ),
            swap_duration=Histogram(
                "lathe_inference_swap_duration_seconds",
                "From seeing a moved alias to serving the new version",
                ["model"],
                buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600),
                registry=registry,
            ),
            engine_up=Gauge(
                "lathe_inference_engine_up", "1 while a healthy engine serves", ["model"], registry=registry
            ),
            engine_restarts=Counter(
                "lathe_inference_engine_restarts_total", "Engines restarted after exiting", ["model"], registry=registry
            ),
            registry_errors=Counter(
                "lathe_inference_registry_errors_total", "Failed registry look-ups", ["model"], registry=registry
            ),
            requests=Counter(
                "lathe_inference_requests_total", "Proxied requests", ["route", "status"], registry=registry
            ),
            request_duration=Histogram(
                "lathe_inference_request_duration_seconds",
                "Proxied request duration, to the last byte",
                ["route"],
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                registry=registry,
            ),
            inflight=Gauge("lathe_inference_inflight_requests", "Requests in flight", registry=registry),
            adapter_requests=Counter(
                "lathe_inference_adapter_requests_total", "Requests per LoRA adapter", ["adapter"], registry=registry
            ),
            adapter_inflight=Gauge(
                "lathe_inference_adapter_inflight_requests",
                "Requests in flight per LoRA adapter",
                ["adapter"],
                registry=registry,
            ),
            adapter_queued=Counter(
                "lathe_inference_adapter_queued_total",
                "Adapter requests that arrived while max_loras other adapters were busy: they wait for a batch",
                ["adapter"],
                registry=registry,
            ),
            adapter_version=Gauge(
                "lathe_inference_adapter_version",
                "Registered version an adapter's alias names (0: none)",
                ["adapter"],
                registry=registry,
            ),
            adapter_loads=Counter(
                "lathe_inference_adapter_loads_total",
                "Adapter loads by outcome: loaded, reloaded (its alias moved), refused (another base), failed",
                ["adapter", "outcome"],
                registry=registry,
            ),
            adapter_evictions=Counter(
                "lathe_inference_adapter_evictions_total",
                "Adapters unloaded to make room (max_cpu_loras), least recently used first",
                ["adapter"],
                registry=registry,
            ),
            adapters_loaded=Gauge(
                "lathe_inference_adapters_loaded", "Adapters loaded in the serving engine", registry=registry
            ),
        )
