"""Settings of the gateway (``LATHE_GATEWAY_*``).

Backends come from a YAML or JSON file (``LATHE_GATEWAY_ROUTES_FILE``) or, when
there is none, from one route to the local inference service:

    models:
      smollm2-135m-instruct:
        policy: least_outstanding          # or round_robin, prefix_affinity
        backends:
          - {url: "http://127.0.0.1:8100", version: "1"}
          - {url: "http://127.0.0.1:8101", version: "2", weight: 10}   # a 10 % canary
          - {url: "http://127.0.0.1:8102", version: auto}   # the version its /health reports
        fallback: [gpt-4o-mini]            # when none of these can serve, the next model's backends
        adapters: [docs-adapter]           # LoRA adapters these backends serve, by registered name
      gpt-4o-mini:                         # an outside OpenAI-compatible provider
        backends:
          - {url: "https://api.openai.com", provider: openai, api_key_env: OPENAI_API_KEY}

With no routes file the default route has the local inference service and, when
``LATHE_GATEWAY_CANDIDATE_BACKEND_URL`` is set, the local candidate service beside it;
both report the version they serve, which is what a rollout splits traffic by.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from lathe.errors import ConfigError
from lathe.settings import GatewaySettings, MlflowSettings, ProcessSettings
from services.gateway.guardrails import GuardrailConfig
from services.gateway.spend import Price

Policy = Literal["least_outstanding", "round_robin", "prefix_affinity"]

_PLACEHOLDERS = {"changeme", "change-me", "admin", "secret", "password", "lathe", "test"}


class BackendConfig(BaseModel):
    model_config = {"extra": "forbid"}

    url: str = Field(pattern=r"^https?://")
    # "auto": the version the backend's /health reports (a Lathe inference service).
    version: str = "default"
    # Share of traffic of this backend's version relative to the other versions.
    weight: float = Field(default=100.0, ge=0.0)
    # Name the backend serves the model under, when it differs from the public name.
    upstream_model: str | None = None
    # An outside OpenAI-compatible provider, named for the metrics and logs. Its API key is
    # read at start-up from the environment variable named here (a Kubernetes Secret set as
    # an env var), never from this file, and is never logged.
    provider: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _credentials(self) -> BackendConfig:
        if self.provider is not None and self.api_key_env is None:
            raise ValueError(f"provider {self.provider!r} needs api_key_env: the variable that holds its API key")
        return self


class ModelRoute(BaseModel):
    model_config = {"extra": "forbid"}

    policy: Policy = "least_outstanding"
    backends: list[BackendConfig] = Field(min_length=1)
    # Checks on this model's requests and answers (services.gateway.guardrails).
    guardrails: list[GuardrailConfig] = Field(default_factory=list)
    # USD per 1k prompt and completion tokens: what a request costs its key and team.
    price: Price | None = None
    # Models whose backends serve this model's requests, in order, when none of its own can
    # (down, or their breakers open): e.g. the local vLLM, then an outside provider.
    fallback: list[str] = Field(default_factory=list, max_length=8)
    # LoRA adapters the same backends serve (registered names): clients ask for them as models.
    # A Lathe inference service's /health lists its own, and the gateway learns those itself.
    adapters: list[str] = Field(default_factory=list, max_length=256)


class RoutesConfig(BaseModel):
    model_config = {"extra": "forbid"}

    models: dict[str, ModelRoute] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> RoutesConfig:
        for model, route in self.models.items():
            for other in route.fallback:
                if other == model or other not in self.models:
                    raise ValueError(f"models.{model}.fallback: {other!r} is not another model of this file")
        seen: dict[str, str] = {}
        for model, route in self.models.items():
            for name in route.adapters:
                if name in self.models or name in seen:
                    other = name if name in self.models else f"an adapter of {seen[name]}"
                    raise ValueError(f"models.{model}.adapters: {name!r} is already {other}")
                seen[name] = model
        return self


class GatewayServiceSettings(ProcessSettings, GatewaySettings):
    model_config = SettingsConfigDict(env_prefix="LATHE_GATEWAY_", extra="ignore")

    # SQLite locally; postgresql+psycopg://… in the cluster. Same SQLAlchemy model.
    database_url: str | None = None
    # Set to share quotas between replicas (atomic Lua on Redis).
    redis_url: str | None = None
    # What a quota check does when Redis cannot be reached: refuse (closed) or admit (open).
    redis_failure_mode: Literal["closed", "open"] = "closed"
    admin_key: SecretStr | None = None
    admin_key_file: Path | None = None
    # Serve the API's description (/docs, /redoc, /openapi.json) to anyone who can reach the
    # gateway. On locally; the Helm chart turns it off unless gateway.docs is set.
    docs: bool = True

    routes_file: Path | None = None
    # The default route: the local inference service.
    default_model: str = "smollm2-135m-instruct"
    default_backend_url: str = "http://127.0.0.1:8100"
    # A second backend of the default route: the local candidate inference service.
    candidate_backend_url: str | None = Field(default=None, pattern=r"^https?://")
    # Discover backends from Kubernetes EndpointSlices (k8s profile): a JSON list of
    # {"model", "namespace", "service", "port_name", "version", "weight"} objects.
    k8s_services: str | None = None
    discovery_interval_s: float = Field(default=5.0, gt=0)

    # The RAG and agent services behind /v1/rag/... and /v1/agents/... (empty: not served).
    rag_url: str | None = Field(default="http://127.0.0.1:8300", pattern=r"^https?://")
    # With no routes file, also route this embedding model to the RAG service's encoder
    # (``{rag_url}/v1/embeddings``), on Kubernetes too; the local platform and the Helm chart
    # set it. Unset: no such route.
    rag_embedding_model: str | None = Field(default=None, min_length=1, max_length=256)
    agent_url: str | None = Field(default="http://127.0.0.1:8400", pattern=r"^https?://")
    # Document uploads go to /v1/rag: a larger body limit than the OpenAI routes'.
    service_max_body_bytes: int = Field(default=64_000_000, ge=1024)

    default_max_tokens: int = Field(default=256, ge=1)
    max_tokens_cap: int = Field(default=4096, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_prompt_tokens: int = Field(default=8192, ge=1)
    # Reserve this many tokens per message and per request on top of the prompt's
    # bytes: chat templates add system prompts and role markers.
    template_overhead_tokens: int = Field(default=48, ge=0)
    # Reserve a prompt at its exact token count, from the tokenizer and chat template of the
    # registry version that serves it (fetched once per version); off, or where a version's
    # tokenizer cannot be had, by the byte bound above.
    exact_prompt_count: bool = True
    # Guardrails on every model's requests and answers, before each model's own (the routes
    # file's) and each key's: a JSON list, e.g. [{"name": "pii", "action": "mask"}].
    guardrails: list[GuardrailConfig] = Field(default_factory=list)
    # USD per 1k prompt and completion tokens per model, for models the routes file does not
    # price (its ``price:`` wins): {"smollm2-135m-instruct": {"prompt": 0.1, "completion": 0.3}}.
    prices: dict[str, Price] = Field(default_factory=dict)
    # How often the spend gauges (lathe_gateway_period_spend_usd, lathe_gateway_budget_usd) are read
    # from the database, where every replica's spend is.
    spend_refresh_s: float = Field(default=15.0, gt=0, le=3600)
    # Response caches a key opts into (lathe keys create --cache exact|semantic): how long an
    # answer is kept, how many per store, the cosine similarity a semantic hit needs, and
    # whether a hit still counts its tokens (and cost) against the key's quotas and budgets.
    cache_ttl_s: float = Field(default=3600.0, gt=0, le=30 * 86400)
    cache_max_entries: int = Field(default=10_000, ge=1, le=10_000_000)
    semantic_cache_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    cache_hits_count_tokens: bool = True
    # Days the audit log keeps a request's row (lathe audit).
    audit_retention_days: int = Field(default=90, ge=1, le=36500)

    request_timeout_s: float = Field(default=300.0, gt=0)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    health_interval_s: float = Field(default=2.0, gt=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_s: float = Field(default=5.0, gt=0)

    # Rollouts: how often each replica syncs weights and figures with the shared store,
    # how long the leader's lease lasts unrenewed, and how long feedback may name a request.
    rollout_interval_s: float = Field(default=1.0, gt=0, le=60)
    # With Redis set, replicas read the rollouts from Redis each interval and from the
    # database (the source of truth) this often; without Redis, the database each interval.
    rollout_reconcile_s: float = Field(default=10.0, gt=0, le=3600)
    rollout_lease_s: float = Field(default=10.0, gt=0, le=600)
    feedback_window_s: float = Field(default=3600.0, gt=0)
    # The registry, where a rollout moves the alias and records its transitions.
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)

    @field_validator("admin_key")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in _PLACEHOLDERS or len(secret) < 16:
                raise ValueError("must be a real secret of at least 16 characters, not a placeholder")
        return value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'gateway' / 'gateway.db'}"

    def load_admin_key(self) -> str | None:
        if self.admin_key is not None:
            return self.admin_key.get_secret_value()
        path = self.admin_key_file or self.home / "gateway" / "admin_key"
        if path.exists():
            return path.read_text().strip()
        return None

    def service_targets(self) -> list:
        from services.gateway.discovery import ServiceTarget

        if not self.k8s_services:
            return []
        return [ServiceTarget.model_validate(item) for item in json.loads(self.k8s_services)]

    def load_routes(self) -> RoutesConfig:
        if self.routes_file is None:
            # Kubernetes: the chat models' backends are discovered, not configured.
            models = {}
            if not self.k8s_services:
                backends = [BackendConfig(url=self.default_backend_url, version="auto")]
                if self.candidate_backend_url:
                    # No traffic until a rollout gives it a share.
                    backends.append(BackendConfig(url=self.candidate_backend_url, version="auto", weight=0))
                models[self.default_model] = ModelRoute(backends=backends)
            if self.rag_embedding_model and self.rag_url:
                models[self.rag_embedding_model] = ModelRoute(backends=[BackendConfig(url=self.rag_url, version="rag")])
            return RoutesConfig(models=models)
        text = self.routes_file.read_text()
        data = json.loads(text) if self.routes_file.suffix == ".json" else yaml.safe_load(text)
        return RoutesConfig.model_validate(data or {})

    @staticmethod
    def provider_key(backend: BackendConfig, model: str) -> SecretStr | None:
        """A provider backend's API key, from the environment variable its route names."""
        if backend.api_key_env is None:
            return None
        value = os.environ.get(backend.api_key_env, "").strip()
        if not value:
            raise ConfigError(
                f"routes: model {model!r}'s {backend.provider} backend needs its API key in "
                f"{backend.api_key_env}, which is not set",
                param=f"models.{model}.backends",
            )
        return SecretStr(value)
