"""The gateway's metrics (``lathe_gateway_*``), served on their own port."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lathe.telemetry import new_registry

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    ttft: Histogram
    tokens: Counter
    inflight: Gauge
    rate_limited: Counter
    upstream_errors: Counter
    breaker_state: Gauge
    backend_healthy: Gauge
    by_version: Counter
    version_errors: Counter
    version_ttft: Histogram
    version_itl: Histogram
    rollout_step: Gauge
    rollout_weight: Gauge
    rollout_decisions: Counter
    feedback: Counter
    prompt_counts: Counter
    guardrail_decisions: Counter
    spend: Counter
    cache_requests: Counter
    provider_requests: Counter
    fallbacks: Counter
    cache_saved: Counter
    spend_period: Gauge
    budget: Gauge

    @classmethod
    def create(cls) -> GatewayMetrics:
        r = new_registry()
        return cls(registry=r, **_traffic(r), **_versions(r), **_governance(r))


def _traffic(r: CollectorRegistry) -> dict:
    """Requests, latency, tokens, refusals and the backends' health."""
    return dict(
        requests=Counter(
            "lathe_gateway_requests_total", "Requests by model, route and status", ["model", "route", "status"],
            registry=r,
        ),
        latency=Histogram(
            "lathe_gateway_request_duration_seconds", "Request duration to the last byte", ["model", "route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        ),
        ttft=Histogram(
            "lathe_gateway_time_to_first_token_seconds", "Time to the first streamed token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        ),
        tokens=Counter(
            "lathe_gateway_tokens_total", "Tokens by key name, model and direction (in/out)",
            ["key", "model", "direction"], registry=r,
        ),
        inflight=Gauge("lathe_gateway_inflight_requests", "Requests in flight", registry=r),
        rate_limited=Counter(
            "lathe_gateway_rate_limited_total", "Requests refused by quotas", ["key", "reason"], registry=r
        ),
        upstream_errors=Counter(
            "lathe_gateway_upstream_errors_total", "Backend failures by backend and kind", ["backend", "kind"],
            registry=r,
        ),
        breaker_state=Gauge(
            "lathe_gateway_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["backend"],
            registry=r,
        ),
        backend_healthy=Gauge(
            "lathe_gateway_backend_healthy", "1 when the backend passes its health check", ["backend"], registry=r
        ),
    )  # fmt: skip


def _versions(r: CollectorRegistry) -> dict:
    """Per model version: canaries and rollouts, and the feedback they are judged by."""
    return dict(
        by_version=Counter(
            "lathe_gateway_version_requests_total", "Requests routed per model version (canaries)",
            ["model", "version"], registry=r,
        ),
        version_errors=Counter(
            "lathe_gateway_version_errors_total", "Backend errors per model version (retried or not)",
            ["model", "version"], registry=r,
        ),
        version_ttft=Histogram(
            "lathe_gateway_version_ttft_seconds", "Time to the first token (or byte) per model version",
            ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r,
        ),
        version_itl=Histogram(
            "lathe_gateway_version_itl_seconds", "Mean inter-token latency of a stream per model version",
            ["model", "version"], buckets=_ITL_BUCKETS, registry=r,
        ),
        rollout_step=Gauge(
            "lathe_rollout_step", "Current step of the model's active rollout (1-based; 0: none active)",
            ["model"], registry=r,
        ),
        rollout_weight=Gauge(
            "lathe_rollout_weight", "Percent of the model's traffic the rollout gives each version",
            ["model", "version"], registry=r,
        ),
        rollout_decisions=Counter(
            "lathe_rollout_decisions_total", "Rollout decisions: advance, promote, rollback",
            ["model", "decision"], registry=r,
        ),
        feedback=Counter(
            "lathe_gateway_feedback_total", "Feedback and judge scores recorded per model version",
            ["model", "version", "source"], registry=r,
        ),
    )  # fmt: skip


def _governance(r: CollectorRegistry) -> dict:
    """How prompts were counted, guardrails, providers and fallbacks, caches, spend and budgets."""
    return dict(
        prompt_counts=Counter(
            "lathe_gateway_prompt_counts_total",
            "Prompts reserved by their exact count (tokenizer) or by the byte bound (bytes)",
            ["model", "method"], registry=r,
        ),
        guardrail_decisions=Counter(
            "lathe_gateway_guardrail_decisions_total",
            "Guardrail decisions on requests and answers: pass, mask or block",
            ["guardrail", "action"], registry=r,
        ),
        spend=Counter(
            "lathe_gateway_spend_usd_total", "What answered requests cost at their model's price, in USD",
            ["team", "key", "model"], registry=r,
        ),
        provider_requests=Counter(
            "lathe_gateway_provider_requests_total", "Backend answers by provider (local: Lathe's own) and status",
            ["provider", "status"], registry=r,
        ),
        fallbacks=Counter(
            "lathe_gateway_fallbacks_total", "Requests a fallback model took over", ["model", "fallback"],
            registry=r,
        ),
        cache_requests=Counter(
            "lathe_gateway_cache_requests_total", "Response cache lookups by cache (exact, semantic) and result",
            ["kind", "result"], registry=r,
        ),
        cache_saved=Counter(
            "lathe_gateway_cache_saved_seconds_total", "What answering the cache's hits took when they were made",
            ["kind"], registry=r,
        ),
        spend_period=Gauge(
            "lathe_gateway_period_spend_usd", "Spend so far in the period of a key or team with a money budget",
            ["scope", "owner", "period"], registry=r,
        ),
        budget=Gauge(
            "lathe_gateway_budget_usd", "A key's or team's money budget per period", ["scope", "owner", "period"],
            registry=r,
        ),
    )  # fmt: skip
