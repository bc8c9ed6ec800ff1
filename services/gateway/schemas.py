"""Request bodies as the gateway checks them: OpenAI's shapes, unknown fields kept.

Only what the gateway acts on is validated (model, messages, token limits, stream);
everything else passes through to the backend untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.guardrails import GuardrailConfig
from services.gateway.spend import SpendBudget, one_per_period


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents ``model`` as a route's JSON body.

    The routes read their bodies themselves (a size limit before parsing, OpenAI's
    error shape after), so FastAPI cannot see the model; without this the spec, and
    every client or fuzzer generated from it, would show no body at all. Nested models
    are inlined: a ``$ref`` into the model's own ``$defs`` means nothing in a spec.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):
            return " ".join(str(part.get("text", "")) for part in self.content)
        return ""


class ChatCompletionRequest(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def prompt_text(self) -> list[str]:
        return [m.text() for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_OpenAIBody):
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not all(isinstance(p, str) for p in value):
            raise ValueError("prompt must be a string or a list of strings")
        return value

    def prompt_text(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)

    def prompt_text(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# Limits are stored in 64-bit integer columns and compared in Redis Lua, whose numbers
# are doubles: 2**53 is exact in both, and more tokens than any key will ever spend.
MAX_LIMIT = 2**53


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w.\-@]+$")
    models: list[str] = Field(default_factory=list)
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    budget: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tools: list[str] = Field(default_factory=list)
    expires_at: str | None = None
    guardrails: list[GuardrailConfig] = Field(default_factory=list)
    team: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[\w.\-@]+$")
    # USD per period, on top of the team's: [{"usd": 10, "period": "day"}].
    spend_budgets: list[SpendBudget] = Field(default_factory=list, max_length=3)

    _periods = field_validator("spend_budgets")(one_per_period)
    # Response caches it opts into (services/gateway/cache.py).
    cache: list[Literal["exact", "semantic"]] = Field(default_factory=list, max_length=2)


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w.\-@]+$")
    budgets: list[SpendBudget] = Field(default_factory=list, max_length=3)

    _periods = field_validator("budgets")(one_per_period)


class CanaryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    version: str
    weight: float = Field(ge=0, le=100)
