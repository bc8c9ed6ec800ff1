"""The components ``lathe up`` runs on a laptop, one class each.

A component knows how to start itself as a background process, how to tell whether
it is healthy, and how to stop. ``LocalPlatform`` (``lathe.platform.local``) runs them
in order and rolls back what it started when one fails.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import httpx

from lathe.errors import PlatformError
from lathe.platform.processes import ProcessState, StateStore, require_free_port
from lathe.settings import LatheSettings
from lathe.supervisor import HealthWait, OnWait, StartErrors, spawn, stop_pid

# How a component that fails to start is reported (the subject is its health URL).
START_ERRORS = StartErrors(exited="{subject} never became healthy: the process exited with code {code}")


class _ServerComponent(ABC):
    """A process started with ``lathe.supervisor.spawn`` that answers an HTTP health check."""

    name = ""
    description = ""
    port_env = ""
    start_timeout_s = 120.0
    # Health answers (their JSON "code") that waiting will not cure: fail the start early.
    give_up_codes: frozenset[str] = frozenset()

    def __init__(self, settings: LatheSettings, store: StateStore) -> None:
        self.settings = settings
        self.store = store

    @property
    @abstractmethod
    def port(self) -> int:
        """The port it listens on (checked free before starting)."""

    def available(self) -> str | None:
        """None when it can start here, else why not (shown in ``lathe status``)."""
        return None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health_url(self) -> str:
        return self.url() + "/health"

    def health_headers(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line that starts it."""

    def env(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        """Create folders and config files before the first start (none by default)."""
        return None

    @property
    def log_file(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    def other_ports(self) -> list[tuple[int, str]]:
        """Ports besides ``port`` it will bind, with the variable that moves each."""
        return []

    def start(self, on_wait: OnWait) -> ProcessState:
        require_free_port(self.port, self.name, self.port_env)
        for port, env_var in self.other_ports():
            require_free_port(port, self.name, env_var)
        self.prepare()
        argv = self.argv()
        process = spawn(self.name, argv, log_file=self.log_file, env=self.env())
        state = ProcessState(self.name, process.pid, self.port, self.url(), str(self.log_file), argv)
        self.store.save(state)
        try:
            HealthWait(
                self.health_url(),
                timeout_s=self.start_timeout_s,
                process=process,
                headers=self.health_headers(),
                on_wait=on_wait,
                give_up_codes=self.give_up_codes,
                errors=START_ERRORS,
            ).wait()
        except BaseException:
            self.stop(state)
            self.store.remove(self.name)
            raise
        return state

    def stop(self, state: ProcessState) -> None:
        stop_pid(state.pid)


class MlflowComponent(_ServerComponent):
    name = "mlflow"
    description = "MLflow tracking server and model registry (SQLite)"
    port_env = "LATHE_MLFLOW_PORT"

    @property
    def port(self) -> int:
        return self.settings.mlflow.port

    def url(self) -> str:
        return f"http://{self.settings.mlflow.host}:{self.port}"

    def prepare(self) -> None:
        for sub in ("artifacts", "prometheus"):
            (self.settings.mlflow_dir / sub).mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        root = self.settings.mlflow_dir
        return [
            sys.executable, "-m", "mlflow", "server",
            "--host", self.settings.mlflow.host,
            "--port", str(self.port),
            "--workers", str(self.settings.mlflow.workers),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            # Artifacts go through the server, under .lathe/ and never ./mlruns.
            "--artifacts-destination", str(root / "artifacts"),
            "--expose-prometheus", str(root / "prometheus"),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class RayComponent(_ServerComponent):
    """A Ray head with token authentication; its token lives under ``.lathe/ray``."""

    name = "ray"
    description = "Ray head (Jobs API on the dashboard port)"
    port_env = "LATHE_RAY_DASHBOARD_PORT"
    start_timeout_s = 90.0

    @property
    def port(self) -> int:
        return self.settings.ray.dashboard_port

    @property
    def token_path(self) -> Path:
        return self.settings.home / "ray" / "auth_token"

    @property
    def temp_dir(self) -> Path:
        return ray_temp_dir(self.settings)

    def health_url(self) -> str:
        return self.url() + "/api/version"

    def health_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"} if self.token_path.exists() else {}

    def token(self) -> str:
        return self.token_path.read_text().strip()

    def other_ports(self) -> list[tuple[int, str]]:
        ray = self.settings.ray
        return [
            (ray.port, "LATHE_RAY_PORT"),
            (ray.client_port, "LATHE_RAY_CLIENT_PORT"),
            (ray.agent_port, "LATHE_RAY_AGENT_PORT"),
        ]

    def prepare(self) -> None:
        write_secret(self.token_path, secrets.token_hex(32))

    def ray_env(self) -> dict[str, str]:
        """What any Ray client of this head needs (``lathe`` sets it for submissions)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def env(self) -> dict[str, str]:
        # Job entrypoints (`python -m pipelines…`) must find the platform's Python first.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**self.ray_env(), "RAY_USAGE_STATS_ENABLED": "0", "PATH": path}

    def argv(self) -> list[str]:
        ray_bin = Path(sys.executable).with_name("ray")
        argv = [
            str(ray_bin), "start", "--head", "--block",
            "--port", str(self.settings.ray.port),
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(self.port),
            "--ray-client-server-port", str(self.settings.ray.client_port),
            "--dashboard-agent-listen-port", str(self.settings.ray.agent_port),
            "--temp-dir", str(self.temp_dir),
            "--disable-usage-stats",
        ]  # fmt: skip
        if self.settings.ray.num_cpus:
            argv += ["--num-cpus", str(self.settings.ray.num_cpus)]
        return argv

    def stop(self, state: ProcessState) -> None:
        # `ray stop` shuts the head down in order; signalling the PID alone leaves raylet
        # and GCS behind. The group kill then catches anything that outlived it.
        ray_bin = Path(sys.executable).with_name("ray")
        subprocess.run(
            [str(ray_bin), "stop"], env={**os.environ, **self.env()}, capture_output=True, timeout=60, check=False
        )
        stop_pid(state.pid, timeout_s=10)


class InferenceComponent(_ServerComponent):
    name = "inference"
    description = "inference service (vLLM behind a registry-aware proxy)"
    port_env = "LATHE_INFERENCE_PORT"
    start_timeout_s = 600.0

    @property
    def port(self) -> int:
        return self.settings.inference.port

    def url(self) -> str:
        return f"http://{self.settings.inference.host}:{self.port}"

    def health_url(self) -> str:
        return self.url() + "/health"

    def available(self) -> str | None:
        engine_python = self.settings.inference.engine_python
        if not engine_python.exists():
            return f"vLLM environment not found ({engine_python}): run `make install`"
        return None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "services.inference"]

    def env(self) -> dict[str, str]:
        return {
            "LATHE_HOME": str(self.settings.home),
            "LATHE_MLFLOW_TRACKING_URI": self.settings.mlflow.uri,
        }


class RagComponent(_ServerComponent):
    """RAG over Qdrant Edge in process; it owns ``$LATHE_HOME/rag/qdrant`` while it runs."""

    name = "rag"
    description = "RAG service (LlamaIndex + Qdrant, MiniLM embeddings)"
    port_env = "LATHE_RAG_PORT"
    start_timeout_s = 120.0
    # Another process holding the store folder: say so after a short grace, not after 120 s.
    give_up_codes = frozenset({"store_locked"})

    @property
    def port(self) -> int:
        return self.settings.rag.port

    def url(self) -> str:
        return f"http://{self.settings.rag.host}:{self.port}"

    def available(self) -> str | None:
        return None if self.settings.rag.enabled else "disabled (LATHE_RAG_ENABLED=false)"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "services.rag"]

    def env(self) -> dict[str, str]:
        return {"LATHE_HOME": str(self.settings.home), "LATHE_RAG_GATEWAY_URL": self.settings.gateway.base_url}


class AgentComponent(_ServerComponent):
    name = "agent"
    description = "agent service (tool calling, memory, guardrails)"
    port_env = "LATHE_AGENT_PORT"
    start_timeout_s = 60.0

    @property
    def port(self) -> int:
        return self.settings.agent.port

    def url(self) -> str:
        return f"http://{self.settings.agent.host}:{self.port}"

    def available(self) -> str | None:
        return None if self.settings.agent.enabled else "disabled (LATHE_AGENT_ENABLED=false)"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "services.agent"]

    def env(self) -> dict[str, str]:
        return {"LATHE_HOME": str(self.settings.home), "LATHE_AGENT_GATEWAY_URL": self.settings.gateway.base_url}


class GatewayComponent(_ServerComponent):
    """The OpenAI front door; its admin key is made on first start (mode 600)."""

    name = "gateway"
    description = "gateway (OpenAI API, keys, quotas, routing)"
    port_env = "LATHE_GATEWAY_PORT"
    start_timeout_s = 60.0

    @property
    def port(self) -> int:
        return self.settings.gateway.port

    def url(self) -> str:
        return f"http://{self.settings.gateway.host}:{self.port}"

    def other_ports(self) -> list[tuple[int, str]]:
        return [(self.settings.gateway.metrics_port, "LATHE_GATEWAY_METRICS_PORT")]

    @property
    def admin_key_path(self) -> Path:
        return self.settings.gateway_dir / "admin_key"

    def prepare(self) -> None:
        write_secret(self.admin_key_path, "lk-admin-" + secrets.token_urlsafe(32))

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "services.gateway"]

    def env(self) -> dict[str, str]:
        env = {
            "LATHE_HOME": str(self.settings.home),
            "LATHE_GATEWAY_DEFAULT_MODEL": self.settings.inference.model_name,
            "LATHE_GATEWAY_DEFAULT_BACKEND_URL": self.settings.inference.base_url,
            # A rollout's candidate service; it takes no traffic until a rollout gives it some.
            "LATHE_GATEWAY_CANDIDATE_BACKEND_URL": self.settings.inference.candidate_base_url,
            "LATHE_GATEWAY_RAG_URL": self.settings.rag.base_url,
            "LATHE_GATEWAY_AGENT_URL": self.settings.agent.base_url,
        }
        if self.settings.rag.enabled:
            # No embedding server runs locally: the RAG service's MiniLM serves /v1/embeddings.
            env["LATHE_GATEWAY_RAG_EMBEDDING_MODEL"] = self.settings.rag.embedding_model
        return env


def write_secret(path: Path, value: str) -> bool:
    """Create a secret file readable by its owner only; keep an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return True


class PrometheusComponent(_ServerComponent):
    name = "prometheus"
    description = "Prometheus scraping every component"
    port_env = "LATHE_PROMETHEUS_PORT"
    start_timeout_s = 60.0

    @property
    def port(self) -> int:
        return self.settings.prometheus.port

    def health_url(self) -> str:
        return self.url() + "/-/ready"

    def binary(self) -> str | None:
        return shutil.which(self.settings.prometheus.binary)

    def available(self) -> str | None:
        if not self.settings.prometheus.enabled:
            return "disabled (LATHE_PROMETHEUS_ENABLED=false)"
        if self.binary() is None:
            return "prometheus binary not installed (apt-get install prometheus)"
        return None

    @property
    def config_path(self) -> Path:
        return self.settings.home / "prometheus" / "prometheus.yml"

    def prepare(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_prometheus_config(self.settings))
        # Prometheus watches the folder of Ray's discovery file, which Ray may not have made yet.
        ray_temp_dir(self.settings).mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [
            str(self.binary()),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.settings.home / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=2d",
        ]


def scrape_targets(settings: LatheSettings) -> dict[str, str]:
    """Every component's metrics endpoint, as ``job -> host:port`` (path ``/metrics``)."""
    return {
        "lathe-inference": f"127.0.0.1:{settings.inference.port}",
        "lathe-gateway": f"127.0.0.1:{settings.gateway.metrics_port}",
        "lathe-mlflow": f"127.0.0.1:{settings.mlflow.port}",
        "lathe-rag": f"127.0.0.1:{settings.rag.port}",
        "lathe-agent": f"127.0.0.1:{settings.agent.port}",
        "prometheus": f"127.0.0.1:{settings.prometheus.port}",
    }


def ray_temp_dir(settings: LatheSettings) -> Path:
    """The local Ray head's temp folder, one per home."""
    # Ray puts Unix sockets under it and they are capped at 107 bytes, so a short
    # path per home rather than one under a possibly deep home folder.
    digest = hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"lathe-ray-{digest}"


def render_prometheus_config(settings: LatheSettings) -> str:
    interval = f"{settings.prometheus.scrape_interval_s}s"
    lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}", "scrape_configs:"]
    for job, target in scrape_targets(settings).items():
        lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: ['{target}']"]
    # Ray's metrics agents pick their ports at start and list them in a file; they listen
    # on every interface, and the local platform reaches them on loopback.
    discovery = ray_temp_dir(settings) / "prom_metrics_service_discovery.json"
    lines += [
        "  - job_name: lathe-ray",
        "    file_sd_configs:",
        f"      - files: ['{discovery}']",
        "        refresh_interval: 10s",
        "    relabel_configs:",
        "      - source_labels: [__address__]",
        "        regex: '.*:([0-9]+)'",
        "        target_label: __address__",
        "        replacement: '127.0.0.1:$1'",
        "      - target_label: job",
        "        replacement: lathe-ray",
    ]
    return "\n".join(lines) + "\n"


def prometheus_targets_health(settings: LatheSettings) -> dict[str, str]:
    """Ask a running Prometheus how each scrape target is doing (job -> up/down/unknown)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{settings.prometheus.port}/api/v1/targets", timeout=3)
        active = response.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise PlatformError(f"cannot read Prometheus targets: {exc}") from None
    return {t["labels"]["job"]: t["health"] for t in active}


def all_components(settings: LatheSettings, store: StateStore) -> list[_ServerComponent]:
    """In start order; ``down`` stops them in reverse."""
    return [
        MlflowComponent(settings, store),
        RayComponent(settings, store),
        InferenceComponent(settings, store),
        RagComponent(settings, store),
        AgentComponent(settings, store),
        GatewayComponent(settings, store),
        PrometheusComponent(settings, store),
    ]
