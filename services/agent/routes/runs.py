"""Agents and their runs: list agents, start a run (JSON or SSE), read a recorded run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.agent.deps import CallerDep, RunnerDep, RunRequestBody
from services.agent.runner import AgentRunner, PreparedRun

router = APIRouter(prefix="/v1/agents", tags=["agents"])


@router.get("")
async def list_agents(runner: RunnerDep, caller: CallerDep) -> dict:
    return {"object": "list", "data": runner.describe(caller)}


@router.post("/{name}/runs", response_model=None)
async def create_run(name: str, body: RunRequestBody, runner: RunnerDep, caller: CallerDep) -> dict | StreamingResponse:
    prepared = await runner.prepare(name, body, caller)
    run = prepared.plan.run
    if body.stream:
        headers = {"x-lathe-run-id": run.id, "x-lathe-session-id": run.session_id, "cache-control": "no-cache"}
        return StreamingResponse(_events(runner, prepared), media_type="text/event-stream", headers=headers)
    await runner.record(prepared)
    return run.public()


@router.get("/{name}/runs/{run_id}")
async def get_run(name: str, run_id: str, runner: RunnerDep) -> dict:
    return await runner.get_run(name, run_id)


async def _events(runner: AgentRunner, prepared: PreparedRun) -> AsyncIterator[str]:
    """One SSE event per step (``event: <type>``), then ``data: [DONE]``."""
    run = prepared.plan.run
    steps = runner.execute(prepared)
    try:
        async for step in steps:
            data = {"run_id": run.id, "session_id": run.session_id, **step}
            yield f"event: {step['type']}\ndata: {json.dumps(data)}\n\n"
    finally:
        await steps.aclose()
    yield "data: [DONE]\n\n"
