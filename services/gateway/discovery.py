"""Backends discovered from Kubernetes (the ``k8s`` profile): EndpointSlices of a Service.

    LATHE_GATEWAY_K8S_SERVICES='[{"model": "llama", "namespace": "lathe",
                                  "service": "lathe-inference-llama", "port_name": "http",
                                  "version": "auto"},
                                 {"model": "llama", "namespace": "lathe",
                                  "service": "lathe-inference-llama-canary", "port_name": "http",
                                  "version": "8", "weight": 0}]'

Every ``interval_s`` the gateway lists each Service's EndpointSlices
(``discovery.k8s.io/v1``, what the Endpoints API became) and makes that target's
backends the ready addresses: new pods join, gone ones leave, and a backend that stays
keeps its breaker, in-flight count and version. The gateway's ServiceAccount may read
EndpointSlices and nothing else.

Several targets may serve one model: the Helm chart's stable Service and, during a
rollout, a canary Service pinned to the candidate version at weight 0 (the rollout
gives it its share). A backend's version is the ``lathe.dev/model-version`` label of its
EndpointSlice (Kubernetes copies a Service's labels onto its slices) when there is one,
else the target's ``version``; ``auto`` takes it from the backend's ``/health`` when
the backend reports one. A backend keeps the version it joined with: pods do not
change version, so during a roll the old pods keep the old version and the new pods
take the new label.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.routing import POLICIES, Backend, CircuitBreaker, ModelPool, RoundRobin, Router

log = logging.getLogger(__name__)

VERSION_LABEL = "lathe.dev/model-version"


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
    adapters: list[str] = Field(default_factory=list)  # LoRA adapters the Service's vLLM serves

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}:{self.port_name or ''}"


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


def slice_version(slices: Any) -> str | None:
    """The version the Service's ``lathe.dev/model-version`` label names, if it has one."""
    for item in slices.items or []:
        labels = (item.metadata.labels if item.metadata is not None else None) or {}
        if labels.get(VERSION_LABEL):
            return labels[VERSION_LABEL]
    return None


def apply_urls(
    router: Router,
    target: ServiceTarget,
    urls: list[str],
    failures: int,
    reset_s: float,
    *,
    owned: dict[str, Backend] | None = None,
    version: str | None = None,
) -> dict[str, Backend]:
    """Make the target's backends in its model's pool exactly ``urls``; return them by URL.

    ``owned`` are the backends this target placed last time (what the previous call
    returned): only those are replaced, so two targets of one model never drop each
    other's backends, whatever versions they serve or learn. New backends take
    ``version`` (the Service's label), else the target's.
    """
    pool = router.pools.get(target.model)
    if pool is None:
        policy = POLICIES.get(target.policy, RoundRobin)()
        pool = router.pools[target.model] = ModelPool(model=target.model, policy=policy)
    router.add_adapters(target.model, target.adapters)
    placed = {id(b) for b in pool.backends}
    mine = {url: b for url, b in (owned or {}).items() if id(b) in placed}
    ids = {id(b) for b in mine.values()}
    others = [b for b in pool.backends if id(b) not in ids]
    kept = {u: mine[u] for u in urls if u in mine}
    version = version or target.version
    adapters = frozenset(target.adapters)
    added = {
        u: Backend(
            u, target.model, version, target.weight, target.model, CircuitBreaker(failures, reset_s), adapters=adapters
        )
        for u in urls
        if u not in mine
    }
    if added or len(kept) != len(mine):
        fields = {"model": target.model, "service": target.service, "version": version, "added": list(added)}
        log.info("backends changed", extra={"fields": {**fields, "now": urls}})
    pool.backends = others + list(kept.values()) + list(added.values())
    return {**kept, **added}


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
        self.owned: dict[str, dict[str, Backend]] = {}  # per target, the backends it placed

    def refresh(self) -> None:
        for target in self.targets:
            slices = self.api.list_namespaced_endpoint_slice(
                target.namespace, label_selector=f"kubernetes.io/service-name={target.service}"
            )
            self.owned[target.key] = apply_urls(
                self.router, target, ready_urls(slices, target), *self.breaker,
                owned=self.owned.get(target.key), version=slice_version(slices),
            )  # fmt: skip

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
