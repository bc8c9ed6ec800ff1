"""LoRA adapters served beside the model by the same vLLM engine, each following its own alias.

Every poll of the alias loop resolves each adapter's alias (``LATHE_INFERENCE_ADAPTERS``).
An adapter is loaded into the engine through vLLM's ``/v1/load_lora_adapter``:

- ahead of time, while fewer than ``max_cpu_loras`` are loaded;
- on demand, by the first request that names it; the request waits for the load and is not
  refused (vLLM then queues it behind ``max_loras`` adapters per batch);
- again, in place from the new version's folder, when its alias moves, with no restart and
  without touching the other adapters.

A request for an adapter while ``max_loras`` other adapters have requests in flight waits in
vLLM's queue for a batch it may join: it is counted (``lathe_inference_adapter_queued_total``),
not refused. (vLLM 0.32's own ``vllm:lora_requests_info`` learns of a waiting request only once
it runs, so it cannot show this.)

When ``max_cpu_loras`` are loaded, loading another unloads the least recently used one,
which is logged and counted (``lathe_inference_adapter_evictions_total``); its next request
loads it again. An adapter trained on another version of the base than the served one is
refused in one line (a 409 to its requests) and never loaded. A new engine (a swap of the
base, or a restart) starts with no adapter: each engine's handle records its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

import httpx

from lathe.errors import (
    AliasNotFoundError,
    ConflictError,
    LatheError,
    ModelNotFoundError,
    UpstreamError,
)
from lathe.lora import check_adapter
from lathe.registry import ModelRegistry
from lathe.telemetry import log_fields
from services.inference.engine import EngineHandle
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceServiceSettings

log = logging.getLogger(__name__)


@dataclass
class AdapterTarget:
    name: str
    alias: str
    version: str | None = None  # what the alias names now (None: not resolved, or no such alias)
    problem: str | None = None  # why it is not served now, in one line
    refused: tuple[str, str] | None = None  # (adapter version, served base) it was refused on


class AdapterSet:
    def __init__(
        self,
        settings: InferenceServiceSettings,
        registry: ModelRegistry,
        metrics: InferenceMetrics,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.http = http
        self.targets = {name: AdapterTarget(name, alias) for name, alias in settings.adapter_aliases.items()}
        self._lock = asyncio.Lock()
        self.inflight: Counter[str] = Counter()  # requests in flight per adapter

    def begin(self, name: str) -> bool:
        """A request for ``name`` starts; True when it must wait for a batch (``max_loras`` busy)."""
        busy = sum(1 for other, n in self.inflight.items() if n > 0 and other != name)
        queued = self.inflight[name] == 0 and busy >= self.settings.max_loras
        self.inflight[name] += 1
        self.metrics.adapter_requests.labels(adapter=name).inc()
        self.metrics.adapter_inflight.labels(adapter=name).set(self.inflight[name])
        if queued:
            self.metrics.adapter_queued.labels(adapter=name).inc()
        return queued

    def end(self, name: str) -> None:
        self.inflight[name] -= 1
        self.metrics.adapter_inflight.labels(adapter=name).set(self.inflight[name])

    def __contains__(self, name: object) -> bool:
        return name in self.targets

    def describe(self, handle: EngineHandle | None) -> list[dict]:
        """What ``/health`` reports of each adapter."""
        loaded = handle.adapters if handle is not None else {}
        return [
            {"name": t.name, "alias": t.alias, "version": t.version, "loaded": loaded.get(t.name), "problem": t.problem}
            for t in self.targets.values()
        ]

    # -- the alias loop ---------------------------------------------------------------
    async def follow(self, handle: EngineHandle, served: str) -> None:
        """Resolve every adapter's alias; reload one that moved, and preload while there is room."""
        for target in self.targets.values():
            version = await asyncio.to_thread(self._resolve, target)
            if version is not None and version != target.version:
                what = "adapter alias moved" if target.version else "adapter alias resolved"
                log.info(what, extra=log_fields(adapter=target.name, alias=target.alias, version=version,
                                                previous=target.version))  # fmt: skip
            target.version = version
            self.metrics.adapter_version.labels(adapter=target.name).set(float(version or 0))
            loaded = handle.adapters.get(target.name)
            if version is None and loaded is not None:
                await self._unload(handle, target.name, reason="its alias is gone")
            elif version is not None and (loaded not in (None, version) or self._room(handle, target, served)):
                try:
                    await self.ensure(handle, target.name, served)
                except LatheError as exc:  # the other adapters go on; this one is tried again next poll
                    if target.problem != exc.one_line():
                        log.error("adapter not loaded", extra=log_fields(adapter=target.name, error=exc.one_line()))
                    target.problem = exc.one_line()

    def _resolve(self, target: AdapterTarget) -> str | None:
        try:
            version = self.registry.resolve(target.name, target.alias).version
        except (AliasNotFoundError, ModelNotFoundError) as exc:
            target.problem = exc.one_line()
            return None
        target.problem = None if target.refused is None else target.problem
        return version

    def _room(self, handle: EngineHandle, target: AdapterTarget, served: str) -> bool:
        """Preload: not loaded, not refused on this base, and a free place."""
        if target.name in handle.adapters or target.refused == (target.version, served):
            return False
        return len(handle.adapters) < self.settings.resident_adapters

    # -- requests ---------------------------------------------------------------------
    async def ensure(self, handle: EngineHandle, name: str, served: str) -> None:
        """Have adapter ``name`` loaded in the engine at its alias's version; a request waits here."""
        target = self.targets[name]
        async with self._lock:
            if target.version is None:
                why = target.problem or "its alias has not been resolved yet"
                raise ModelNotFoundError(f"adapter {name} is not served now: {why}", param="model")
            loaded = handle.adapters
            if loaded.get(name) == target.version:
                loaded.move_to_end(name)
                return
            if target.refused == (target.version, served):
                raise ConflictError(target.problem or f"adapter {name} does not fit {served}", param="model")
            folder = await asyncio.to_thread(
                self.registry.download, name, target.version, self.settings.model_cache_dir / "adapters"
            )
            try:
                check_adapter(name, folder, served, self.settings.max_lora_rank)
            except LatheError as exc:
                target.refused, target.problem = (target.version, served), exc.one_line()
                self.metrics.adapter_loads.labels(adapter=name, outcome="refused").inc()
                log.error("adapter refused", extra=log_fields(adapter=name, version=target.version,
                                                              error=exc.one_line()))  # fmt: skip
                raise ConflictError(exc.message, param="model") from None
            while name not in loaded and len(loaded) >= self.settings.resident_adapters:
                await self._unload(handle, next(iter(loaded)), reason="least recently used", evict=True)
            await self._load(handle, name, target.version, str(folder))

    async def _load(self, handle: EngineHandle, name: str, version: str, folder: str) -> None:
        previous = handle.adapters.get(name)
        body = {"lora_name": name, "lora_path": folder, "load_inplace": previous is not None}
        await self._call(handle, "/v1/load_lora_adapter", body, name)
        handle.adapters[name] = version
        handle.adapters.move_to_end(name)
        self.targets[name].problem = None
        self.metrics.adapter_loads.labels(adapter=name, outcome="reloaded" if previous else "loaded").inc()
        self.metrics.adapters_loaded.set(len(handle.adapters))
        log.info("adapter loaded", extra=log_fields(adapter=name, version=version, previous=previous,
                                                    engine_version=handle.version))  # fmt: skip

    async def _unload(self, handle: EngineHandle, name: str, *, reason: str, evict: bool = False) -> None:
        await self._call(handle, "/v1/unload_lora_adapter", {"lora_name": name}, name)
        version = handle.adapters.pop(name)
        self.metrics.adapters_loaded.set(len(handle.adapters))
        if evict:
            self.metrics.adapter_evictions.labels(adapter=name).inc()
        log.warning("adapter unloaded", extra=log_fields(adapter=name, version=version, reason=reason,
                                                         resident=self.settings.resident_adapters))  # fmt: skip

    async def _call(self, handle: EngineHandle, path: str, body: dict, name: str) -> None:
        try:
            answer = await self.http.post(handle.base_url + path, json=body, timeout=120.0)
        except httpx.HTTPError as exc:
            self.metrics.adapter_loads.labels(adapter=name, outcome="failed").inc()
            raise UpstreamError(f"adapter {name}: the engine did not answer {path} ({type(exc).__name__})") from None
        if answer.status_code != 200:
            self.metrics.adapter_loads.labels(adapter=name, outcome="failed").inc()
            raise UpstreamError(f"adapter {name}: {path} answered {answer.status_code}: {answer.text[:300]}")
