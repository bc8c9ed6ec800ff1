"""The agent service's FastAPI app: ``create_app(settings)``; no work at import.

    python -m services.agent                      # 127.0.0.1:8400, settings from LATHE_AGENT_*

Tests inject ``transport`` (an httpx transport standing in for the gateway and the
web) and ``tools`` (a registry of their own) to exercise the real app offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx
from fastapi import FastAPI

from lathe import tracing
from lathe.errors import ConfigError
from lathe.http_service import install_error_handlers
from lathe.telemetry import RequestIdMiddleware
from services.agent.llm import GatewayChat
from services.agent.memory import open_memory
from services.agent.metrics import AgentMetrics
from services.agent.routes import health, runs
from services.agent.runner import AgentRunner
from services.agent.settings import AgentServiceSettings
from services.agent.tool_calling import AgentLoop
from services.agent.tools.base import Tool
from services.agent.tools.registry import load_tools


def create_app(
    settings: AgentServiceSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    tools: Mapping[str, Tool] | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = dict(tools) if tools is not None else load_tools(settings)
        check_agents(settings, registry)
        memory = open_memory(settings)
        metrics = AgentMetrics.create()
        metrics.prime(list(settings.agents))
        http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            event_hooks=tracing.httpx_hooks(),
        )
        loop = AgentLoop(settings, GatewayChat(http, settings.gateway_url), registry, metrics)
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.memory = memory
        app.state.tools = registry
        app.state.runner = AgentRunner(settings, loop, memory, metrics, registry, http)
        try:
            yield
        finally:
            await http.aclose()
            await memory.close()

    telemetry = tracing.install("agent", settings.tracing)
    app = FastAPI(title="Lathe agent", version="0.1.0", lifespan=lifespan, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(runs.router)
    install_error_handlers(app)
    return app


def check_agents(settings: AgentServiceSettings, registry: Mapping[str, Tool]) -> None:
    """An agent naming a tool nobody registered is a typo: refuse to start, naming it."""
    for name, agent in settings.agents.items():
        missing = [t for t in agent.tools if t != "*" and t not in registry]
        if missing:
            raise ConfigError(
                f"LATHE_AGENT_AGENTS: agent {name!r} names unknown tools {missing} (known: {sorted(registry)})"
            )
