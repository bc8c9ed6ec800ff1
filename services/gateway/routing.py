"""Which backend takes a request: pools per model, canary splits, policies, breakers.

A model's pool holds backends grouped by version. A request first draws a version by
weight (a canary: version 2 at weight 10 against version 1 at 90), then the pool's
policy picks among that version's healthy backends. A canary set on the pool (by an
admin or a rollout) overrides the configured weights. A request that names its session
or user draws its version from a hash of that name instead of at random, so a
conversation stays on one version while the canary's share only grows:

- ``LeastOutstanding`` (default): fewest requests in flight;
- ``RoundRobin``: in turn;
- ``PrefixAffinity``: a consistent hash of the prompt's first characters, so the same
  prefix lands on the same vLLM and finds its prefix cache warm.

A model's LoRA adapters (served by the same vLLM, under their own registered names) route
to the model's pool and keep their name upstream: ``adapters`` of a route, of a discovered
Service, or what a Lathe inference service's ``/health`` lists. Metrics, keys and prices
see the adapter's name like any model's.

A model may name fallback models: when none of its backends can serve a request (down, or
their breakers open), the next model's backends do, e.g. an outside provider (a backend
with ``provider:`` and the API key from the environment variable it names).

Each backend has a circuit breaker: after ``failures`` consecutive errors it opens
and takes no traffic until ``reset_s`` has passed; then one trial request (half-open)
closes it again on success. A backend that breaks off a stream it had begun opens it
at once (``trip``): a busy backend answers slowly or refuses, a crashing one drops
what it was sending, and every request sent to it before its health check fails
would be dropped the same way.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lathe.errors import EngineUnavailableError, ModelNotFoundError
from services.gateway.settings import GatewayServiceSettings, RoutesConfig

log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures
        self.reset_s = reset_s
        self.clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allows(self) -> bool:
        state = self.state
        return state == "closed" or (state == "half_open" and not self.trial_in_flight)

    def on_attempt(self) -> None:
        if self.state == "half_open":
            self.trial_in_flight = True

    def on_success(self) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def on_failure(self) -> None:
        self.consecutive_failures += 1
        self.trial_in_flight = False
        if self.state == "half_open" or self.consecutive_failures >= self.failures_to_open:
            self.opened_at = self.clock()

    def trip(self) -> None:
        """Open now, whatever the count: the backend failed in a way that says it is down."""
        self.consecutive_failures = max(self.consecutive_failures + 1, self.failures_to_open)
        self.trial_in_flight = False
        self.opened_at = self.clock()


@dataclass(eq=False)
class Backend:
    url: str
    model: str
    version: str
    weight: float
    upstream_model: str
    breaker: CircuitBreaker
    outstanding: int = 0
    healthy: bool = True  # from active health checks
    learns_version: bool = False  # version "auto": taken from the backend's /health
    provider: str = "local"  # or an outside provider's name: it has no /health, its breaker decides
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # its credentials: never logged
    adapters: frozenset[str] = frozenset()  # the LoRA adapters it serves besides its model

    def __post_init__(self) -> None:
        self.learns_version = self.learns_version or self.version == "auto"

    def available(self) -> bool:
        return self.healthy and self.breaker.allows()

    def answer_headers(self) -> dict[str, str]:
        """What a client learns of who answered: the version, and the provider when it is not ours."""
        headers = {"x-lathe-backend-version": self.version}
        if self.provider != "local":
            headers["x-lathe-provider"] = self.provider
        return headers


class RoutingPolicy(Protocol):
    def choose(self, backends: Sequence[Backend], routing_key: str) -> Backend: ...


class LeastOutstanding:
    def choose(self, backends: Sequence[Backend], routing_key: str) -> Backend:
        fewest = min(b.outstanding for b in backends)
        return random.choice([b for b in backends if b.outstanding == fewest])


class RoundRobin:
    def __init__(self) -> None:
        self._turn = 0

    def choose(self, backends: Sequence[Backend], routing_key: str) -> Backend:
        self._turn += 1
        return backends[self._turn % len(backends)]


class PrefixAffinity:
    """Consistent hashing with virtual nodes: a backend leaving moves only its keys."""

    replicas = 64

    def choose(self, backends: Sequence[Backend], routing_key: str) -> Backend:
        ring = sorted((_hash(f"{b.url}#{i}"), b) for b in backends for i in range(self.replicas))
        points = [point for point, _ in ring]
        index = bisect.bisect(points, _hash(routing_key)) % len(ring)
        return ring[index][1]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


POLICIES: dict[str, Callable[[], RoutingPolicy]] = {
    "least_outstanding": LeastOutstanding,
    "round_robin": RoundRobin,
    "prefix_affinity": PrefixAffinity,
}


@dataclass
class ModelPool:
    model: str
    policy: RoutingPolicy
    backends: list[Backend] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    # (version, percent): the version takes that share, the other versions the rest.
    canary: tuple[str, float] | None = None
    # Models whose backends take over, in order, when none of this one's can serve.
    fallback: list[str] = field(default_factory=list)

    def versions(self) -> dict[str, float]:
        return self._weights(self.backends)

    def _weights(self, backends: Sequence[Backend]) -> dict[str, float]:
        weights: dict[str, float] = {}
        for b in backends:
            weights[b.version] = max(weights.get(b.version, 0.0), b.weight)
        if self.canary is not None:
            version, share = self.canary
            others = [v for v in weights if v != version]
            for v in weights:
                weights[v] = share if v == version else (100.0 - share) / max(len(others), 1)
        return weights

    def servable_versions(self) -> list[str]:
        """The versions ``choose`` may pick from now: of available backends, with a share."""
        candidates = [b for b in self.backends if b.available()] or self.backends
        weights = self._weights(candidates)
        return sorted(v for v, w in weights.items() if w > 0) or sorted(weights)

    def choose(
        self, routing_key: str, exclude: set[str] = frozenset(), sticky: str | None = None, adapter: str | None = None
    ) -> Backend:
        """``adapter``: only backends that serve it (a canary of another base version does not)."""
        candidates = [
            b
            for b in self.backends
            if b.available() and b.url not in exclude and (adapter is None or adapter in b.adapters)
        ]
        if not candidates:
            what = f"adapter {adapter!r} of model {self.model!r}" if adapter else f"model {self.model!r}"
            raise EngineUnavailableError(f"no healthy backend for {what}")
        weights = self._weights(candidates)
        versions = [v for v, w in weights.items() if w > 0] or list(weights)
        if len(versions) == 1:
            version = versions[0]
        elif sticky is not None:
            version = self._sticky_version(versions, weights, sticky)
        else:
            version = self.rng.choices(versions, weights=[weights[v] for v in versions])[0]
        return self.policy.choose([b for b in candidates if b.version == version], routing_key)

    def _sticky_version(self, versions: list[str], weights: dict[str, float], sticky: str) -> str:
        """The canary version first on the line, so a session inside its share stays inside as it grows."""
        first = self.canary[0] if self.canary else None
        ordered = sorted(versions, key=lambda v: (v != first, v))
        point = (_hash(f"{self.model}|{sticky}") % 1_000_000) / 1_000_000 * sum(weights[v] for v in ordered)
        for version in ordered:
            point -= weights[version]
            if point < 0:
                return version
        return ordered[-1]


class Router:
    def __init__(self, pools: dict[str, ModelPool], adapters: dict[str, str] | None = None) -> None:
        self.pools = pools
        self.adapters: dict[str, str] = dict(adapters or {})  # adapter -> the model whose backends serve it

    def add_adapters(self, model: str, names: Sequence[str]) -> None:
        """Serve ``names`` on ``model``'s backends; a name that is a model of its own stays one."""
        for name in names:
            if name not in self.pools and self.adapters.get(name) != model:
                log.info("adapter routed", extra={"fields": {"adapter": name, "model": model}})
                self.adapters[name] = model

    def upstream_model(self, requested: str, backend: Backend) -> str:
        """The name sent to ``backend``: an adapter's own on its base's backends, else the backend's."""
        return requested if self.adapters.get(requested) == backend.model else backend.upstream_model

    @classmethod
    def from_config(cls, routes: RoutesConfig, breaker_failures: int, breaker_reset_s: float) -> Router:
        pools = {}
        for model, route in routes.models.items():
            pool = ModelPool(model=model, policy=POLICIES[route.policy](), fallback=list(route.fallback))
            for backend in route.backends:
                key = GatewayServiceSettings.provider_key(backend, model)
                pool.backends.append(
                    Backend(
                        url=backend.url.rstrip("/"),
                        model=model,
                        version=backend.version,
                        weight=backend.weight,
                        upstream_model=backend.upstream_model or model,
                        breaker=CircuitBreaker(breaker_failures, breaker_reset_s),
                        provider=backend.provider or "local",
                        headers={"authorization": f"Bearer {key.get_secret_value()}"} if key else {},
                        adapters=frozenset(route.adapters),
                    )
                )
            pools[model] = pool
        adapters = {name: model for model, route in routes.models.items() for name in route.adapters}
        return cls(pools, adapters)

    def chain(self, model: str) -> list[ModelPool]:
        """The model's pool, then its fallbacks' (unknown names were refused at start-up)."""
        first = self.pool(model)
        return [first, *(self.pools[f] for f in first.fallback if f in self.pools)]

    def pool(self, model: str) -> ModelPool:
        try:
            return self.pools[self.adapters.get(model, model)]
        except KeyError:
            known = ", ".join(sorted([*self.pools, *self.adapters])) or "none"
            raise ModelNotFoundError(f"model {model!r} is not served here (models: {known})", param="model") from None

    def all_backends(self) -> list[Backend]:
        return [b for pool in self.pools.values() for b in pool.backends]

    def set_canary(self, model: str, version: str, weight: float) -> dict[str, float]:
        """Give ``version`` ``weight`` percent of ``model``'s traffic; the others share the rest."""
        pool = self.pool(model)
        if version not in pool.versions():
            raise ModelNotFoundError(f"model {model!r} has no backend for version {version!r}", param="version")
        pool.canary = (version, weight)
        return pool.versions()

    def clear_canary(self, model: str) -> None:
        """Back to the configured weights."""
        if model in self.pools:
            self.pools[model].canary = None
