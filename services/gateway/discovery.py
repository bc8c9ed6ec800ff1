"""Backends discovered from Kubernetes (the ``k8s`` profile): EndpointSlices of a Service.

    LATHE_GATEWAY_K8S_SERVICES='[{"model": "llama", "namespace": "lathe",
                                  "service": "lathe-inference-llama", "port_name": "http"}]'

Every ``interval_s`` the gateway lists the Service's EndpointSlices
(``discovery.k8s.io/v1``, what the Endpoints API became) and makes the pool's
backends the ready addresses: new pods join, gone ones leave, and a backend that stays
keeps its breaker and in-flight count. The gateway's ServiceAccount may read
EndpointSlices and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.routing import POLICIES, Backend, CircuitBreaker, ModelPool, RoundRobin, Router

log = logging.getLogger(__name__)


class ServiceTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    namespace: str
    service: str
    port_name: str | None = None
    version: str = "default"
    weight: float = Field(default=100.0, ge=0)
    policy: str = "least_outstanding"
    scheme: str = "http"


class SliceLister(Protocol):
    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str) -> Any: ...


def ready_urls(slices: Any, target: ServiceTarget) -> list[str]:
    """The URLs of ready endpoints in an EndpointSliceList, for the target's port."""
    urls = []
    for item in slices.items or []:
        ports = item.ports or []
        port = next((p.port for p in ports if target.port_name is None or p.name == target.port_name), None)
        if port is None:
            continue
        for endpoint in item.endpoints or []:
            conditions = endpoint.conditions
            if conditions is not None and conditions.ready is False:
                continue
            for address in endpoint.addresses or []:
                host = f"[{address}]" if ":" in address else address
                urls.append(f"{target.scheme}://{host}:{port}")
    return sorted(set(urls))


def apply_urls(router: Router, target: ServiceTarget, urls: list[str], failures: int, reset_s: float) -> None:
    pool = router.pools.get(target.model)
    if pool is None:
        policy = POLICIES.get(target.policy, RoundRobin)()
        pool = router.pools[target.model] = ModelPool(model=target.model, policy=policy)
    mine = {b.url: b for b in pool.backends if b.version == target.version}
    others = [b for b in pool.backends if b.version != target.version]
    kept = [mine[u] for u in urls if u in mine]
    added = [
        Backend(u, target.model, target.version, target.weight, target.model, CircuitBreaker(failures, reset_s))
        for u in urls
        if u not in mine
    ]
    if added or len(kept) != len(mine):
        log.info(
            "backends changed",
            extra={"fields": {"model": target.model, "added": [b.url for b in added], "now": urls}},
        )
    pool.backends = others + kept + added


class EndpointDiscovery:
    def __init__(
        self,
        router: Router,
        targets: list[ServiceTarget],
        api: SliceLister,
        *,
        interval_s: float = 5.0,
        breaker_failures: int = 3,
        breaker_reset_s: float = 5.0,
    ) -> None:
        self.router = router
        self.targets = targets
        self.api = api
        self.interval_s = interval_s
        self.breaker = (breaker_failures, breaker_reset_s)

    def refresh(self) -> None:
        for target in self.targets:
            slices = self.api.list_namespaced_endpoint_slice(
                target.namespace, label_selector=f"kubernetes.io/service-name={target.service}"
            )
            apply_urls(self.router, target, ready_urls(slices, target), *self.breaker)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # the API server may blink; keep the last known backends
                log.warning("endpoint discovery failed; keeping the current backends: %s", type(exc).__name__)
            await asyncio.sleep(self.interval_s)


def kubernetes_slice_api() -> SliceLister:
    """The real client, configured from the pod's ServiceAccount (or ~/.kube/config)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.DiscoveryV1Api()
