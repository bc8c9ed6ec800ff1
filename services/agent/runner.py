"""A run from request to record: check the request, plan it, drive the loop, remember it.

``prepare`` turns bad input into typed 4xx errors before anything is generated;
``execute`` yields the loop's steps and, however the run ends (even when a streaming
client goes away), records it, updates the conversation and the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from lathe.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from services.agent.memory import Conversation, MemoryStore, trim
from services.agent.metrics import AgentMetrics
from services.agent.prompt_formats import protocol_named
from services.agent.schemas import Run, RunRequest, new_session_id
from services.agent.settings import AgentConfig, AgentServiceSettings
from services.agent.tool_calling import AgentLoop, RunPlan
from services.agent.tools.base import Tool, ToolContext
from services.agent.tools.registry import allowed_tools

log = logging.getLogger(__name__)


@dataclass
class Caller:
    """Who runs the agent, as the gateway vouches for them in headers."""

    authorization: str | None = None
    request_id: str | None = None
    key_name: str | None = None
    # None: every tool (header absent or "*").
    allowed_tools: set[str] | None = None


@dataclass
class PreparedRun:
    plan: RunPlan
    conversation: Conversation


class AgentRunner:
    def __init__(
        self,
        settings: AgentServiceSettings,
        loop: AgentLoop,
        memory: MemoryStore,
        metrics: AgentMetrics,
        registry: dict[str, Tool],
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.loop = loop
        self.memory = memory
        self.metrics = metrics
        self.registry = registry
        self.http = http

    def agent(self, name: str) -> AgentConfig:
        agent = self.settings.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.settings.agents))
            raise NotFoundError(f"unknown agent {name!r} (agents: {known})", param="name")
        return agent

    def describe(self, caller: Caller) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "object": "agent",
                "description": agent.description,
                "tools": [
                    {"name": t, "description": self.registry[t].description}
                    for t in allowed_tools(agent.tools, self.registry, caller.allowed_tools)
                ],
            }
            for name, agent in sorted(self.settings.agents.items())
        ]

    async def prepare(self, name: str, body: RunRequest, caller: Caller) -> PreparedRun:
        settings = self.settings
        agent = self.agent(name)
        if len(body.input) > settings.max_input_chars:
            raise InvalidRequestError(f"input is longer than {settings.max_input_chars} characters", param="input")
        if body.max_steps is not None and body.max_steps > settings.max_steps:
            raise InvalidRequestError(f"max_steps must be at most {settings.max_steps}", param="max_steps")
        names = allowed_tools(agent.tools, self.registry, caller.allowed_tools)
        tools = {n: self.registry[n] for n in names}
        forced = None
        if body.tool_choice not in {"auto", "none"}:
            if body.tool_choice not in self.registry:
                known = ", ".join(sorted(self.registry))
                raise InvalidRequestError(
                    f"unknown tool {body.tool_choice!r} in tool_choice (tools: {known}, or auto, none)",
                    param="tool_choice",
                )
            if body.tool_choice not in tools:
                raise PermissionDeniedError(
                    f"tool {body.tool_choice!r} is not allowed for agent {name!r} with this key", param="tool_choice"
                )
            forced = tools[body.tool_choice]
        model = body.model or settings.default_model
        plain = body.tool_choice == "none" or not tools
        protocol = protocol_named("plain" if plain else settings.protocol_for(model))
        offered = [] if plain else list(tools.values())
        session_id = body.session_id or new_session_id()
        conversation = await self.memory.load(session_id) if body.session_id else Conversation()
        system = protocol.system_prompt(agent.system_prompt, offered)
        if conversation.summary:
            system += f"\n\nEarlier in this conversation:\n{conversation.summary}"
        messages = [
            {"role": "system", "content": system},
            *conversation.turns,
            {"role": "user", "content": body.input},
        ]
        run = Run(
            agent=name,
            session_id=session_id,
            model=model,
            protocol=protocol.name,
            tools=[] if plain else names,
            key_name=caller.key_name,
            request_id=caller.request_id,
        )
        context = ToolContext(settings, self.http, caller.authorization, caller.request_id)
        plan = RunPlan(
            run=run,
            input=body.input,
            messages=messages,
            tools={} if plain else tools,
            protocol=protocol,
            max_steps=body.max_steps or settings.max_steps,
            forced=forced,
            context=context,
        )
        return PreparedRun(plan, conversation)

    async def execute(self, prepared: PreparedRun) -> AsyncIterator[dict[str, Any]]:
        run = prepared.plan.run
        start = time.monotonic()
        try:
            async for step in self.loop.run(prepared.plan):
                yield step
        finally:
            if run.status == "running":  # the client went away mid-stream, or the loop broke
                run.status = "failed"
                run.add_step("error", code="interrupted", message="the run was interrupted")
            run.latency_ms = int((time.monotonic() - start) * 1000)
            self._observe(run)
            await self._remember(prepared, run)

    async def record(self, prepared: PreparedRun) -> Run:
        async for _ in self.execute(prepared):
            pass
        return prepared.plan.run

    def _observe(self, run: Run) -> None:
        m = self.metrics
        m.runs.labels(agent=run.agent, status=run.status).inc()
        m.steps.labels(agent=run.agent).observe(run.model_calls)
        m.run_latency.labels(agent=run.agent).observe(run.latency_ms / 1000)
        m.tokens.labels(agent=run.agent, direction="in").inc(run.usage.prompt_tokens)
        m.tokens.labels(agent=run.agent, direction="out").inc(run.usage.completion_tokens)

    async def _remember(self, prepared: PreparedRun, run: Run) -> None:
        try:
            await self.memory.save_run(run)
            if run.status == "completed" and run.answer is not None:
                conversation = prepared.conversation
                conversation.turns += [
                    {"role": "user", "content": prepared.plan.input},
                    {"role": "assistant", "content": run.answer},
                ]
                await self.memory.save(run.session_id, trim(conversation, self.settings.context_tokens))
        except Exception:  # the answer is already out; a lost record must not turn it into an error
            log.exception("could not record the run", extra={"fields": {"run": run.id}})

    async def get_run(self, name: str, run_id: str) -> dict[str, Any]:
        self.agent(name)
        record = await self.memory.get_run(run_id)
        if record is None or record.get("agent") != name:
            raise NotFoundError(f"no run {run_id!r} of agent {name!r}", param="run_id")
        return record
