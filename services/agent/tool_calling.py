"""The tool-calling loop: ask the model, run the tool it names, feed the result back, repeat.

Guardrails, in the order a step meets them: the run's deadline; the tool allowlist
(fixed before the first call, so nothing a tool returns can widen it); the tool's
input schema (strict, before anything runs); the per-tool timeout; ``max_steps``
model calls; ``max_retries`` replies sent back for a format or argument error.

``AgentLoop.run`` is an async generator of steps, each also appended to ``plan.run``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from services.agent.llm import GatewayChat, ModelCallError
from services.agent.metrics import AgentMetrics
from services.agent.prompt_formats import ChatProtocol, FormatError, Reply, ToolCall
from services.agent.schemas import Run
from services.agent.settings import AgentServiceSettings
from services.agent.tools.base import Tool, ToolContext, ToolError, single_string_field

log = logging.getLogger(__name__)


class RunFailed(Exception):
    """Ends a run: the message becomes its last ``error`` step."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunPlan:
    """Everything a run may do, decided before the first model call."""

    run: Run
    input: str
    messages: list[dict[str, Any]]
    tools: dict[str, Tool]
    protocol: ChatProtocol
    max_steps: int
    forced: Tool | None
    context: ToolContext


@dataclass
class _State:
    """What changes during a run besides the run record."""

    messages: list[dict[str, Any]]
    retries_left: int
    forced: Tool | None
    deadline: float
    # After a forced call succeeds, the next step is steered to answer from its result.
    answer_next: bool = False


class AgentLoop:
    def __init__(
        self, settings: AgentServiceSettings, chat: GatewayChat, registry: dict[str, Tool], metrics: AgentMetrics
    ) -> None:
        self.settings = settings
        self.chat = chat
        self.registry = registry
        self.metrics = metrics

    async def run(self, plan: RunPlan) -> AsyncIterator[dict[str, Any]]:
        run, settings = plan.run, self.settings
        deadline = time.monotonic() + settings.run_timeout_s
        state = _State(list(plan.messages), settings.max_retries, plan.forced, deadline)
        try:
            while True:
                if run.model_calls >= plan.max_steps:
                    run.status = "max_steps"
                    yield run.add_step("error", code="max_steps", message=f"no answer after {plan.max_steps} steps")
                    return
                forced = state.forced
                field_name = single_string_field(forced) if forced else None
                if forced and field_name and getattr(forced, "input_is_argument", False):
                    call = ToolCall(forced.name, {field_name: plan.input})
                    state.messages.append(plan.protocol.call_message(call))
                    async for step in self._handle(plan, state, call, "input_as_argument"):
                        yield step
                    continue
                if forced:
                    prefill = plan.protocol.prefill(forced)
                elif state.answer_next:
                    prefill = plan.protocol.answer_prefill()
                    state.answer_next = False
                else:
                    prefill = None
                reply, raw = await self._ask(plan, state, prefill)
                fallback = None
                if isinstance(reply, FormatError):
                    yield run.add_step("error", code="format_error", message=str(reply), output=raw[:500])
                    self.metrics.retries.labels(reason="format").inc()
                    field_name = single_string_field(forced) if forced else None
                    if state.retries_left > 0 or forced is None or field_name is None:
                        state.retries_left = _spend_retry(state.retries_left, "the model did not follow the protocol")
                        state.messages += plan.protocol.retry_messages(raw, str(reply))
                        continue
                    # The model never wrote a readable call to the forced tool: the question itself is the argument.
                    call = ToolCall(forced.name, {field_name: plan.input})
                    reply, fallback = Reply(plan.protocol.call_message(call), calls=[call]), "input_as_argument"
                state.messages.append(reply.assistant_message)
                if reply.thought:
                    yield run.add_step("thought", content=reply.thought)
                if reply.answer is not None:
                    run.answer, run.status = reply.answer, "completed"
                    yield run.add_step("answer", content=reply.answer)
                    return
                for call in reply.calls:
                    async for step in self._handle(plan, state, call, fallback):
                        yield step
        except RunFailed as exc:
            run.status = "failed"
            yield run.add_step("error", code=exc.code, message=str(exc))
        except ModelCallError as exc:
            run.status = "failed"
            yield run.add_step("error", code="model_error", message=exc.one_line())

    async def _ask(self, plan: RunPlan, state: _State, prefill: str | None) -> tuple[Reply | FormatError, str]:
        remaining = state.deadline - time.monotonic()
        if remaining <= 0:
            raise RunFailed("run_timeout", f"the run took longer than {self.settings.run_timeout_s:g} s")
        sent = state.messages + ([{"role": "assistant", "content": prefill}] if prefill else [])
        body = {
            "model": plan.run.model,
            "messages": sent,
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
            **plan.protocol.request_fields(list(plan.tools.values()), state.forced),
        }
        if prefill:  # the model continues the assistant turn begun for it (vLLM's chat extension)
            body.update(continue_final_message=True, add_generation_prompt=False)
        completion = await self.chat.complete(
            body,
            authorization=plan.context.authorization,
            request_id=plan.context.request_id,
            timeout_s=min(self.settings.request_timeout_s, remaining),
        )
        plan.run.model_calls += 1
        plan.run.usage.add(completion.usage)
        raw = (prefill or "") + (completion.message.get("content") or "")
        try:
            reply = plan.protocol.parse(completion.message, prefill)
        except FormatError as exc:
            return exc, raw
        if state.forced is not None and reply.answer is not None:
            return FormatError(f"this step must call {state.forced.name}, not answer"), raw
        return reply, raw

    async def _handle(
        self, plan: RunPlan, state: _State, call: ToolCall, fallback: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        """One tool call: refuse it, reject its arguments, or run it; the observation joins the messages."""
        run, forced = plan.run, state.forced
        tool = plan.tools.get(call.tool)
        if tool is None:
            # Decided by the allowlist fixed before the run: no tool result can change it.
            known = call.tool in self.registry
            outcome, code = ("denied", "tool_not_allowed") if known else ("unknown", "unknown_tool")
            label = self.metrics.tool_label(call.tool, set(self.registry))
            self.metrics.tool_calls.labels(tool=label, outcome=outcome).inc()
            available = ", ".join(plan.tools) or "none"
            message = f"tool {call.tool!r} is not {'allowed' if known else 'known'} here (available: {available})"
            yield run.add_step("error", code=code, tool=call.tool, message=message)
            state.messages.append(plan.protocol.observation(call, f"error: {message}"))
            return
        args, error = _validate(tool, call)
        if error is not None:
            self.metrics.tool_calls.labels(tool=tool.name, outcome="invalid").inc()
            self.metrics.retries.labels(reason="arguments").inc()
            yield run.add_step("error", code="invalid_arguments", tool=tool.name, message=error)
            field_name = single_string_field(tool)
            if state.retries_left > 0 or forced is not tool or field_name is None:
                state.messages.append(plan.protocol.observation(call, f"error: invalid arguments: {error}"))
                state.retries_left = _spend_retry(state.retries_left, f"the arguments for {tool.name} never validated")
                return
            args, fallback = tool.Input.model_validate({field_name: plan.input}), "input_as_argument"
        extras: dict[str, Any] = {"forced": True} if forced is tool else {}
        if fallback:
            extras["fallback"] = fallback
        dumped = args.model_dump(mode="json", exclude_none=True)
        yield run.add_step("tool_call", tool=tool.name, id=call.id, arguments=dumped, **extras)
        text, outcome, took = await self._execute(tool, args, plan.context, state.deadline)
        self.metrics.tool_calls.labels(tool=tool.name, outcome=outcome).inc()
        self.metrics.tool_latency.labels(tool=tool.name).observe(took)
        yield run.add_step(
            "tool_result", tool=tool.name, id=call.id, outcome=outcome, content=text, latency_ms=int(took * 1000)
        )
        state.messages.append(plan.protocol.observation(call, text))
        if forced is tool:
            state.forced = None
            state.answer_next = outcome == "ok"

    async def _execute(self, tool: Tool, args: BaseModel, ctx: ToolContext, deadline: float) -> tuple[str, str, float]:
        """The result text (cut to ``tool_result_chars``), the outcome and the seconds it took."""
        timeout = min(self.settings.timeout_for(tool.name), max(deadline - time.monotonic(), 0.001))
        start = time.monotonic()
        try:
            text, outcome = await asyncio.wait_for(tool.run(args, ctx), timeout), "ok"
        except TimeoutError:
            text, outcome = f"error: {tool.name} did not finish within {timeout:.3g} s", "timeout"
        except ToolError as exc:
            text, outcome = f"error: {exc}", "error"
        except Exception:
            log.exception("tool failed", extra={"fields": {"tool": tool.name}})
            text, outcome = f"error: {tool.name} failed unexpectedly", "error"
        took = time.monotonic() - start
        limit = self.settings.tool_result_chars
        text = str(text)
        if len(text) > limit:
            text = text[:limit] + f"\n… ({len(text) - limit} more characters cut)"
        return text, outcome, took


def _spend_retry(retries_left: int, why: str) -> int:
    if retries_left <= 0:
        raise RunFailed("retries_exhausted", f"{why} (retries exhausted)")
    return retries_left - 1


def _validate(tool: Tool, call: ToolCall) -> tuple[BaseModel | None, str | None]:
    if call.error is not None:
        return None, call.error
    try:
        # strict: "5" is not an integer and 5 is not a string, as in the JSON schema the model saw.
        return tool.Input.model_validate(call.arguments, strict=True), None
    except ValidationError as exc:
        parts = []
        for item in exc.errors()[:3]:
            where = ".".join(str(p) for p in item["loc"]) or "arguments"
            parts.append(f"{where}: {item['msg']}")
        return None, "; ".join(parts)
