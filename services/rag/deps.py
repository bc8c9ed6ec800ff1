"""Request dependencies: the service's parts, and the caller's key to pass on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.rag.service import RagService


def _service(request: Request) -> RagService:
    return request.app.state.rag


def _authorization(request: Request) -> str | None:
    return request.headers.get("authorization")


ServiceDep = Annotated[RagService, Depends(_service)]
Authorization = Annotated[str | None, Depends(_authorization)]
