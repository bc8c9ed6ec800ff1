"""Keep the version an alias points at served, and swap versions without dropping requests.

``AliasServer.run`` is one loop: resolve the alias, and when it names a version other
than the one being served, download it, start an engine for it beside the current
one, switch new requests to it once healthy, wait for the old engine's requests to
finish and stop it. A registry that is down leaves the current version serving and
is retried with exponential backoff.

With adapters configured, each poll also follows the adapters' aliases
(``services.inference.adapters``) on the serving engine.

Beside it a watcher checks the engine process every ``engine_check_interval_s``: one
that exits (killed, out of memory, crashed) is restarted from the folder it served,
so no registry is needed for it, and each restart is logged and counted
(``lathe_inference_engine_restarts_total``). Until the new engine is healthy,
``/health`` says ``degraded`` (503) with the reason, and requests get a 503 that
says so rather than a connection error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from lathe.errors import EngineUnavailableError, LatheError, RegistryUnavailableError
from lathe.platform.processes import port_is_free
from lathe.registry import ModelRegistry, ModelVersionInfo
from lathe.telemetry import log_fields
from services.inference.adapters import AdapterSet
from services.inference.engine import Engine, EngineHandle, VllmEngine
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceServiceSettings

log = logging.getLogger(__name__)

EngineFactory = Callable[[Path, str, int], Engine]


class AliasServer:
    def __init__(
        self,
        settings: InferenceServiceSettings,
        registry: ModelRegistry,
        metrics: InferenceMetrics,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.engine_factory = engine_factory or (
            lambda model_dir, version, port: VllmEngine(settings, model_dir, version, port)
        )
        self.active: Engine | None = None
        self.retiring: list[Engine] = []
        self.phase = "starting"
        self.last_error: str | None = None
        self.registry_ok = False
        self.swaps = 0
        self.restarts = 0
        self._model_dir: Path | None = None  # the active engine's folder: what a restart starts from
        self._swap_lock = asyncio.Lock()
        self.adapters: AdapterSet | None = None  # LoRA adapters beside the model, when configured

    # -- requests ---------------------------------------------------------------------
    def acquire(self) -> EngineHandle:
        """The engine for a new request; counted until ``release``. No await: atomic."""
        if self.active is None or self.active.exited():
            raise EngineUnavailableError(f"no engine is serving {self.settings.model_name} now ({self.detail})")
        handle = self.active.handle
        handle.inflight += 1
        self.metrics.inflight.inc()
        return handle

    def release(self, handle: EngineHandle) -> None:
        handle.inflight -= 1
        self.metrics.inflight.dec()

    @property
    def version(self) -> str | None:
        return self.active.handle.version if self.active else None

    def served_by(self, handle: EngineHandle) -> str:
        """``NAME/VERSION`` of the base an engine serves: what its adapters must have been trained on."""
        return f"{self.settings.model_name}/{handle.version}"

    async def prepare(self, handle: EngineHandle, model: object) -> str | None:
        """Before a request is sent: load the adapter it names, if it names one, and count it in
        flight until ``finish_adapter``. Returns the adapter's name, or None."""
        if self.adapters is None or model not in self.adapters:
            return None
        name = str(model)
        self.adapters.begin(name)
        try:
            await self.adapters.ensure(handle, name, self.served_by(handle))
        except BaseException:
            self.adapters.end(name)
            raise
        return name

    def finish_adapter(self, name: str | None) -> None:
        if name is not None and self.adapters is not None:
            self.adapters.end(name)

    def healthy(self) -> bool:
        return self.active is not None and not self.active.exited()

    @property
    def detail(self) -> str:
        """What ``/health`` and a refused request say is going on."""
        dead = self.active
        if dead is not None and dead.exited():  # also before the watcher's next look
            return f"restarting vLLM for version {dead.handle.version}: it exited (code {dead.returncode})"
        return self.phase

    def status(self) -> str:
        """``ok``: an engine serves; ``degraded``: the one that served exited and is being
        restarted; ``unavailable``: none has served yet (starting, or no registry)."""
        if self.healthy():
            return "ok"
        return "degraded" if self.active is not None else "unavailable"

    # -- the loops --------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the alias; beside it, restart an engine that exits."""
        watcher = asyncio.create_task(self._watch_engine(), name="engine-watch")
        try:
            await self._follow_alias()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _follow_alias(self) -> None:
        backoff = 1.0
        labels = {"model": self.settings.model_name}
        while True:
            try:
                target = await asyncio.to_thread(self._target)
                self.registry_ok = True
                backoff = 1.0
                # A dead engine of the same version is the watcher's to restart.
                if self.active is None or target.version != self.version:
                    await self.swap_to(target)
                if self.adapters is not None and self.healthy():
                    await self.adapters.follow(self.active.handle, self.served_by(self.active.handle))
                self.last_error = None
                await asyncio.sleep(self.settings.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except RegistryUnavailableError as exc:
                self.registry_ok = False
                self.metrics.registry_errors.labels(**labels).inc()
                self.last_error = exc.one_line()
                if self.active is None:
                    self.phase = f"waiting for the registry: {exc.message}"
                log.warning("registry unavailable; retrying", extra=log_fields(retry_in_s=backoff))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.registry_backoff_max_s)
            except LatheError as exc:
                self.last_error = exc.one_line()
                if self.active is None:
                    self.phase = f"failed: {exc.one_line()}"
                log.error("cannot serve the alias", extra=log_fields(error=exc.one_line()))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.registry_backoff_max_s)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("unexpected error in the serving loop")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.registry_backoff_max_s)

    async def _watch_engine(self) -> None:
        backoff = 1.0
        while True:
            await asyncio.sleep(self.settings.engine_check_interval_s)
            dead = self.active
            if dead is None or not dead.exited():
                continue
            try:
                await self._restart(dead)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = exc.one_line() if isinstance(exc, LatheError) else f"{type(exc).__name__}: {exc}"
                log.error("engine restart failed", extra=log_fields(error=self.last_error, retry_in_s=backoff))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.registry_backoff_max_s)

    async def _restart(self, dead: Engine) -> None:
        """Start the version ``dead`` served, from its folder, and switch to it."""
        async with self._swap_lock:
            if self.active is not dead or self._model_dir is None:
                return  # a swap replaced it meanwhile
            labels = {"model": self.settings.model_name}
            version = dead.handle.version
            started = time.monotonic()
            self.restarts += 1
            self.metrics.engine_up.labels(**labels).set(0)
            self.metrics.engine_restarts.labels(**labels).inc()
            self.phase = self.detail
            fields = log_fields(version=version, pid=dead.handle.pid, exit_code=dead.returncode, restarts=self.restarts)
            log.error("engine exited; restarting", extra=fields)
            await dead.stop()  # reap it and whatever it left running
            engine = self.engine_factory(self._model_dir, version, self._free_port())
            await engine.start()
            self.active = engine  # the dead one had no requests left to drain: they failed with it
            self.phase = f"serving version {version}"
            self.metrics.engine_up.labels(**labels).set(1)
            restart_s = round(time.monotonic() - started, 1)
            log.info("engine restarted", extra=log_fields(version=version, pid=engine.handle.pid, restart_s=restart_s))

    async def swap_to(self, target: ModelVersionInfo) -> None:
        """Start ``target`` beside the current engine, switch, drain and stop the old one."""
        async with self._swap_lock:
            labels = {"model": self.settings.model_name}
            started = time.monotonic()
            previous = self.active
            log.info(
                "serving new version",
                extra=log_fields(model=target.name, version=target.version, previous=self.version),
            )
            try:
                self.phase = f"downloading version {target.version}"
                model_dir = await asyncio.to_thread(
                    self.registry.download, target.name, target.version, self.settings.model_cache_dir
                )
                self.phase = f"starting vLLM for version {target.version}"
                engine = self.engine_factory(model_dir, target.version, self._free_port())
                await engine.start()
            except BaseException:
                self.metrics.swaps.labels(outcome="failed", **labels).inc()
                self.phase = f"serving version {self.version}" if previous else "failed to start"
                raise
            # The switch itself: one assignment, no await, so no request sees a gap.
            self.active = engine
            self._model_dir = model_dir
            self.swaps += 1
            self.phase = f"serving version {target.version}"
            self.metrics.model_version.labels(alias=self.settings.alias, **labels).set(float(target.version))
            self.metrics.engine_up.labels(**labels).set(1)
            self.metrics.swaps.labels(outcome="success", **labels).inc()
            self.metrics.swap_duration.labels(**labels).observe(time.monotonic() - started)
            if previous is not None:
                self.retiring.append(previous)
                await self._drain_and_stop(previous)
                self.retiring.remove(previous)
            log.info(
                "now serving",
                extra=log_fields(version=target.version, swap_s=round(time.monotonic() - started, 1)),
            )

    async def _drain_and_stop(self, engine: Engine) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while engine.handle.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if engine.handle.inflight:
            log.warning("stopping an engine with requests in flight", extra=log_fields(n=engine.handle.inflight))
        await engine.stop()

    def _target(self) -> ModelVersionInfo:
        if self.settings.version:  # pinned: serve that version, whatever the alias says
            return self.registry.get_version(self.settings.model_name, self.settings.version)
        return self.registry.resolve(self.settings.model_name, self.settings.alias)

    def _free_port(self) -> int:
        taken = {e.handle.base_url for e in [self.active, *self.retiring] if e is not None}
        port = self.settings.engine_port_base
        while port < self.settings.engine_port_base + 100:
            url = f"http://{self.settings.engine_host}:{port}"
            if url not in taken and port_is_free(port, self.settings.engine_host):
                return port
            port += 1
        raise EngineUnavailableError(f"no free engine port from {self.settings.engine_port_base}")

    async def shutdown(self) -> None:
        for engine in [self.active, *self.retiring]:
            if engine is not None:
                await engine.stop()
        self.active = None
        self.metrics.engine_up.labels(model=self.settings.model_name).set(0)
