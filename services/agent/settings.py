"""Settings of the agent service (``LATHE_AGENT_*``).

Lists and maps are JSON in the environment::

    LATHE_AGENT_PROTOCOLS='{"gpt-4o-mini": "tools"}'          # every other model: react
    LATHE_AGENT_AGENTS='{"analyst": {"tools": ["sql_query", "calculator"], "system_prompt": "…"}}'
    LATHE_AGENT_HTTP_ALLOWLIST='["docs.python.org"]'           # or docs.python.org,example.com
    LATHE_AGENT_SQL_DATABASE=.lathe/agent/shop.db
    LATHE_AGENT_MEMORY_URL=redis://lathe-redis:6379/2         # or postgresql+psycopg://…
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from lathe.settings import AgentSettings, GatewaySettings, ProcessSettings

Protocol = Literal["tools", "react"]

BUILTIN_TOOLS = ("calculator", "rag_search", "sql_query", "http_get")

DEFAULT_SYSTEM_PROMPT = (
    "You are Lathe's assistant. Use a tool when it helps answer the question; "
    "otherwise answer directly, briefly and truthfully."
)


class AgentConfig(BaseModel):
    model_config = {"extra": "forbid"}

    # Tool names this agent may call; "*" means every registered tool.
    tools: list[str] = Field(default_factory=lambda: list(BUILTIN_TOOLS))
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    description: str = ""


def _default_gateway_url() -> str:
    return GatewaySettings().base_url


class AgentServiceSettings(ProcessSettings, AgentSettings):
    model_config = SettingsConfigDict(env_prefix="LATHE_AGENT_", extra="ignore")

    # The agent generates (and searches documents) through the gateway, with the caller's key.
    gateway_url: str = Field(default_factory=_default_gateway_url, pattern=r"^https?://")
    default_model: str = "smollm2-135m-instruct"
    # Per model: "tools" (OpenAI tool calls) when the model was trained for them, else
    # "react" (a strict text protocol the loop parses): small models rarely emit tool_calls.
    protocols: dict[str, Protocol] = Field(default_factory=dict)
    default_protocol: Protocol = "react"
    agents: dict[str, AgentConfig] = Field(default_factory=lambda: {"assistant": AgentConfig()})

    # Guardrails. max_steps is the default and the cap a request may lower.
    max_steps: int = Field(default=6, ge=1, le=50)
    # Malformed replies or arguments that fail their schema, per run, before it fails.
    max_retries: int = Field(default=2, ge=0, le=10)
    tool_timeout_s: float = Field(default=15.0, gt=0)
    # Per tool overrides of tool_timeout_s, e.g. {"rag_search": 30}.
    tool_timeouts: dict[str, float] = Field(default_factory=dict)
    run_timeout_s: float = Field(default=120.0, gt=0)
    max_input_chars: int = Field(default=8000, ge=1)
    # Longer tool results are cut before they reach the model (a 135M model has a small window).
    tool_result_chars: int = Field(default=1500, ge=100)

    # Generation knobs sent with every model call.
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    request_timeout_s: float = Field(default=60.0, gt=0)

    # Conversations and run records: sqlite:///… (default), postgresql+psycopg://…, redis://….
    memory_url: str | None = None
    # Redis keys expire after this long; SQL rows are kept.
    memory_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Tokens of remembered conversation sent with a run; older turns fold into a summary.
    context_tokens: int = Field(default=1024, ge=64)

    sql_database: Path | None = None
    sql_row_limit: int = Field(default=50, ge=1, le=10_000)
    # Hosts http_get may fetch: exact names, or ".example.com" for the domain and its subdomains.
    http_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_max_bytes: int = Field(default=20_000, ge=256)
    rag_collection: str = "docs"
    rag_top_k: int = Field(default=3, ge=1, le=20)

    @field_validator("http_allowlist", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return value

    @field_validator("http_allowlist")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [h.lower() for h in value]

    @field_validator("memory_url")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql", "redis://", "rediss://")):
            raise ValueError("must be sqlite:///…, postgresql+psycopg://… or redis://…")
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> AgentServiceSettings:
        if self.sql_database is not None:
            self.sql_database = self.sql_database.expanduser().resolve()
        if not self.agents:
            raise ValueError("agents: at least one agent is needed")
        return self

    @property
    def agent_dir(self) -> Path:
        return self.home / "agent"

    @property
    def memory(self) -> str:
        return self.memory_url or f"sqlite:///{self.agent_dir / 'agent.db'}"

    def protocol_for(self, model: str) -> Protocol:
        return self.protocols.get(model, self.default_protocol)

    def timeout_for(self, tool: str) -> float:
        return self.tool_timeouts.get(tool, self.tool_timeout_s)
