"""One settings tree for the whole platform.

Every section reads its own environment prefix, so a service's variables are
named for the service (``LATHE_INFERENCE_PORT``, ``LATHE_MLFLOW_PORT``) and the
root adds the few that span everything (``LATHE_PROFILE``, ``LATHE_HOME``). Each
service's settings add their own knobs to their section and share ``LATHE_HOME`` and
``LATHE_LOG_LEVEL`` with the root through ``ProcessSettings``.

    from lathe.settings import load_settings
    settings = load_settings()           # raises ConfigError naming the variable

Profiles: ``local`` runs everything on loopback under ``LATHE_HOME`` (``.lathe``);
``k8s`` expects the addresses of in-cluster services and refuses loopback ones.
Nothing here touches the disk or the network: paths are computed, not created.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lathe.errors import ConfigError

Profile = Literal["local", "k8s"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Port = int  # validated by ``_check_port`` below; a plain alias keeps signatures readable


def default_engine_python() -> Path:
    """The vLLM environment that ``make install`` builds beside the main one."""
    return Path(sys.prefix).parent / ".venv-vllm" / "bin" / "python"


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


class _Section(BaseSettings):
    """Base of every section: unknown variables are ignored, bad ones are named."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)


class TracingSettings(_Section):
    """OpenTelemetry traces through the services (lathe/tracing.py); off by default."""

    model_config = SettingsConfigDict(env_prefix="LATHE_TRACING_")

    enabled: bool = False
    # An OTLP/HTTP traces endpoint (an OpenTelemetry Collector: http://otel-collector:4318/v1/traces).
    # Unset with tracing on: spans are made and propagated, and exported nowhere.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    # Share of traces kept where no caller decided (a caller's sampled flag is followed).
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class ProcessSettings(_Section):
    """What every Lathe process reads whatever its section's prefix: ``LATHE_HOME``,
    ``LATHE_LOG_LEVEL`` and ``LATHE_TRACING_*``. The root and each service's settings build on it.

    The fields read those names by alias, so ``LATHE_HOME=`` works as an argument, and
    ``home=`` and ``log_level=`` mean the same.
    """

    home: Path = Field(default=Path(".lathe"), validation_alias="LATHE_HOME")
    log_level: LogLevel = Field(default="INFO", validation_alias="LATHE_LOG_LEVEL")
    tracing: TracingSettings = Field(default_factory=TracingSettings)  # LATHE_TRACING_*

    @model_validator(mode="before")
    @classmethod
    def _by_name(cls, values: Any) -> Any:
        # Only by alias: reading by name too would make pydantic-settings also read
        # LATHE_GATEWAY_HOME and the like from the environment.
        if isinstance(values, dict):
            for name, alias in (("home", "LATHE_HOME"), ("log_level", "LATHE_LOG_LEVEL")):
                if name in values:
                    values = {k: v for k, v in values.items() if k != name} | {alias: values[name]}
        return values

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Processes started by ``lathe up`` run from other directories; they need one answer.
        return value.expanduser().resolve()


class MlflowSettings(_Section):
    """The MLflow tracking server and model registry."""

    model_config = SettingsConfigDict(env_prefix="LATHE_MLFLOW_")

    host: str = "127.0.0.1"
    port: Port = 5000
    # Set in the cluster (``http://lathe-mlflow:5000``); locally derived from host and port.
    tracking_uri: str | None = None
    # One worker and no job runner: 2 processes and ~0.5 GiB instead of 15 and 3.2 GiB.
    workers: int = Field(default=1, ge=1, le=16)
    request_timeout_s: float = Field(default=10.0, gt=0)

    _port = field_validator("port")(_check_port)

    @property
    def uri(self) -> str:
        return self.tracking_uri or f"http://{self.host}:{self.port}"


class RaySettings(_Section):
    """The Ray head that runs pipelines (local head, or a KubeRay cluster's)."""

    model_config = SettingsConfigDict(env_prefix="LATHE_RAY_")

    port: Port = 6380
    dashboard_port: Port = 8265
    client_port: Port = 10001
    agent_port: Port = 52365
    num_cpus: int | None = Field(default=None, ge=1)
    # Address of a remote cluster's dashboard (Jobs API); locally derived.
    address: str | None = None
    # Ray's own variable: a cluster's token when the head is not the local one (which
    # writes its token under the home).
    auth_token: SecretStr | None = Field(default=None, validation_alias="RAY_AUTH_TOKEN")

    _ports = field_validator("port", "dashboard_port", "client_port", "agent_port")(_check_port)

    @property
    def jobs_address(self) -> str:
        return self.address or f"http://127.0.0.1:{self.dashboard_port}"


class InferenceSettings(_Section):
    """Where the inference service listens and which registered model it serves.

    The service adds its engine knobs on top (``services.inference.settings``).
    """

    model_config = SettingsConfigDict(env_prefix="LATHE_INFERENCE_")

    host: str = "127.0.0.1"
    port: Port = 8100
    model_name: str = Field(default="smollm2-135m-instruct", min_length=1, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    alias: str = Field(default="champion", min_length=1, pattern=r"^[A-Za-z][\w\-]*$")
    # Pin one version instead of following the alias (a candidate scored before promotion).
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    url: str | None = None  # set when the service runs elsewhere (the cluster)
    # The candidate service a local rollout starts beside this one, pinned to a version;
    # its engines take ports from ``candidate_engine_port_base`` upwards.
    candidate_port: Port = 8101
    candidate_engine_port_base: int = Field(default=8500, ge=1024, le=65000)
    # vLLM runs from its own environment: its pins clash with the platform's.
    engine_python: Path = Field(default_factory=default_engine_python)

    _port = field_validator("port", "candidate_port")(_check_port)

    @property
    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"

    @property
    def candidate_base_url(self) -> str:
        return f"http://{self.host}:{self.candidate_port}"

    @property
    def model_uri(self) -> str:
        if self.version:
            return f"models:/{self.model_name}/{self.version}"
        return f"models:/{self.model_name}@{self.alias}"


class GatewaySettings(_Section):
    """Where the gateway listens; the service adds keys, quotas and routing on top."""

    model_config = SettingsConfigDict(env_prefix="LATHE_GATEWAY_")

    host: str = "127.0.0.1"
    port: Port = 8000
    # Metrics live on their own port so the API port exposes nothing unauthenticated.
    metrics_port: Port = 9100
    url: str | None = None  # set when the gateway runs elsewhere (the cluster)
    # The admin key for `lathe keys`; locally `lathe up` writes one under the home.
    admin_key: SecretStr | None = None

    _ports = field_validator("port", "metrics_port")(_check_port)

    @property
    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class RagSettings(_Section):
    """Where the RAG service listens; the service adds stores, chunking and retrieval on top."""

    model_config = SettingsConfigDict(env_prefix="LATHE_RAG_")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8300
    url: str | None = None  # set when the service runs elsewhere (the cluster)
    # The OpenAI model name its encoder answers to at POST /v1/embeddings (the local
    # gateway routes this name to it); rename it with LATHE_RAG_EMBED_MODEL_PATH.
    embedding_model: str = Field(default="all-minilm-l6-v2", min_length=1, max_length=256)

    _port = field_validator("port")(_check_port)

    @property
    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class AgentSettings(_Section):
    """Where the agent service listens; the service adds tools, memory and guardrails on top."""

    model_config = SettingsConfigDict(env_prefix="LATHE_AGENT_")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8400
    url: str | None = None  # set when the service runs elsewhere (the cluster)

    _port = field_validator("port")(_check_port)

    @property
    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class PrometheusSettings(_Section):
    """The local Prometheus, started only when its binary is installed."""

    model_config = SettingsConfigDict(env_prefix="LATHE_PROMETHEUS_")

    enabled: bool = True
    port: Port = 9090
    binary: str = "prometheus"
    scrape_interval_s: int = Field(default=5, ge=1, le=300)

    _port = field_validator("port")(_check_port)


class LatheSettings(ProcessSettings):
    """The root of the tree."""

    model_config = SettingsConfigDict(env_prefix="LATHE_")

    profile: Profile = "local"
    # Converted bundled models; shareable between homes (tests point many homes at one).
    assets: Path | None = None

    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    rag: RagSettings = Field(default_factory=RagSettings)

    agent: AgentSettings = Field(default_factory=AgentSettings)

    @field_validator("assets")
    @classmethod
    def _absolute_assets(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _profile_rules(self) -> LatheSettings:
        if self.profile == "k8s":
            if not self.mlflow.tracking_uri:
                raise ValueError("LATHE_MLFLOW_TRACKING_URI must be set in the k8s profile")
            if not self.inference.url:
                raise ValueError("LATHE_INFERENCE_URL must be set in the k8s profile")
        return self

    # Paths under home. Computed here so every component agrees on them.
    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def assets_dir(self) -> Path:
        return self.assets or self.home / "assets"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def gateway_dir(self) -> Path:
        return self.home / "gateway"

    @property
    def rag_dir(self) -> Path:
        return self.home / "rag"

    @property
    def agent_dir(self) -> Path:
        return self.home / "agent"


_SECTION_PREFIX = {
    "mlflow": "LATHE_MLFLOW_",
    "ray": "LATHE_RAY_",
    "inference": "LATHE_INFERENCE_",
    "gateway": "LATHE_GATEWAY_",
    "prometheus": "LATHE_PROMETHEUS_",
    "rag": "LATHE_RAG_",
    "agent": "LATHE_AGENT_",
}


def describe_validation_error(error: ValidationError, prefix: str = "LATHE_") -> str:
    """Turn pydantic's report into one line per field, named as the user sets it."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        # A check across fields (a model validator) names its field first: "kv_cache_dtype: ...".
        across = re.match(r"Value error, ([a-z][a-z0-9_]*): (.*)", item["msg"], re.S) if not loc else None
        if across is not None:
            lines.append(f"{prefix}{across[1].upper()}: {across[2]}")
            continue
        # A field read by alias (``LATHE_HOME``) is already named as the user sets it.
        named = loc[0].startswith("LATHE_") if loc else False
        name = ("" if named else prefix) + "_".join(loc).upper() if loc else "settings"
        received = item.get("input")
        shown = f" (got {received!r})" if loc and not isinstance(received, dict) else ""
        lines.append(f"{name}: {item['msg']}{shown}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> LatheSettings:
    """Read the environment into the tree; a bad value raises ``ConfigError`` naming it."""
    sections = {}
    for key, cls in (
        ("mlflow", MlflowSettings),
        ("ray", RaySettings),
        ("inference", InferenceSettings),
        ("gateway", GatewaySettings),
        ("prometheus", PrometheusSettings),
        ("rag", RagSettings),
        ("agent", AgentSettings),
    ):
        if key in overrides:
            continue
        try:
            sections[key] = cls()
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, _SECTION_PREFIX[key])) from None
    try:
        return LatheSettings(**sections, **overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
