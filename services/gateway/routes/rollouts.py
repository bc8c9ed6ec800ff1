"""Rollouts (admin key) and feedback on answers (any key)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from services.gateway.deps import AdminOnly, CurrentKey, parse_body, read_json
from services.gateway.rollouts.controller import RolloutController
from services.gateway.rollouts.spec import Feedback, Rollback, RolloutSpec
from services.gateway.schemas import openapi_body

router = APIRouter(tags=["rollouts"])


def _controller(request: Request) -> RolloutController:
    return request.app.state.rollouts


@router.post("/admin/rollouts", status_code=201, dependencies=[AdminOnly], openapi_extra=openapi_body(RolloutSpec))
async def create_rollout(request: Request, controller: RolloutController = Depends(_controller)) -> dict:
    spec = parse_body(RolloutSpec, await read_json(request, 65536))
    rollout = await controller.create(spec, by=spec.requested_by)
    return rollout.to_dict()


@router.get("/admin/rollouts", dependencies=[AdminOnly])
async def list_rollouts(model: str | None = None, controller: RolloutController = Depends(_controller)) -> dict:
    rollouts = await asyncio.to_thread(controller.store.list, model, 50)
    return {"data": [r.to_dict() for r in rollouts], "leader": controller.leader, "replica": controller.replica}


@router.post("/admin/rollouts/rollback", dependencies=[AdminOnly], openapi_extra=openapi_body(Rollback))
async def rollback(request: Request, controller: RolloutController = Depends(_controller)) -> dict:
    body = parse_body(Rollback, await read_json(request, 65536))
    rollout = await controller.rollback(body.model, by=body.requested_by, reason=body.reason)
    return rollout.to_dict()


@router.post("/v1/feedback", openapi_extra=openapi_body(Feedback))
async def feedback(request: Request, key: CurrentKey, controller: RolloutController = Depends(_controller)) -> dict:
    body = parse_body(Feedback, await read_json(request, 65536))
    return await controller.feedback(body.request_id, body.score)
