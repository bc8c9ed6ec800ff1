"""Wire shapes of the agent API: the run request, its steps, and the run record."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StepType = Literal["thought", "tool_call", "tool_result", "answer", "error"]
RunStatus = Literal["running", "completed", "max_steps", "failed"]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    session_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[\w.\-:]+$")
    stream: bool = False
    model: str | None = Field(default=None, min_length=1, max_length=256)
    max_steps: int | None = Field(default=None, ge=1)
    # "auto", "none", or a tool name: that tool is called at the first step.
    tool_choice: str = Field(default="auto", min_length=1, max_length=64)

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)


class Run(BaseModel):
    """A run as it goes and as it is recorded; ``public()`` is what the API returns."""

    id: str = Field(default_factory=lambda: "run_" + uuid.uuid4().hex[:24])
    object: Literal["agent.run"] = "agent.run"
    agent: str
    session_id: str
    model: str
    protocol: str
    status: RunStatus = "running"
    answer: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int = 0
    # Model calls made: the unit max_steps counts.
    model_calls: int = 0
    created: int = Field(default_factory=lambda: int(time.time()))
    tools: list[str] = Field(default_factory=list)
    key_name: str | None = None
    request_id: str | None = None

    def add_step(self, type_: StepType, **fields: Any) -> dict[str, Any]:
        step = {"type": type_, "index": len(self.steps), **fields}
        self.steps.append(step)
        return step

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def new_session_id() -> str:
    return "ses_" + uuid.uuid4().hex[:24]
