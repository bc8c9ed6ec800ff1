"""What a tool is: a name, a description, a pydantic input schema and an async ``run``.

A tool module defines one class::

    class WordCount(BaseTool):
        name = "word_count"
        description = "Count the words of a text."

        class Input(BaseModel):
            text: str = Field(description="The text to count.")

        async def run(self, args: Input, ctx: ToolContext) -> str:
            return str(len(args.text.split()))

and a package registers it under the ``lathe.agent_tools`` entry-point group
(``word_count = "mypkg.tools:WordCount"``). The loop validates every call against
``Input`` before ``run`` sees it; ``run`` raises ``ToolError`` for a refusal the model
should read (bad query, host not allowed) and returns text otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from services.agent.settings import AgentServiceSettings


class ToolError(Exception):
    """A refusal or failure the model is shown as the tool's result."""


@dataclass
class ToolContext:
    """What a call may use: shared clients and the caller's identity (never stored)."""

    settings: AgentServiceSettings
    http: httpx.AsyncClient
    authorization: str | None = None
    request_id: str | None = None

    def gateway_headers(self) -> dict[str, str]:
        headers = {}
        if self.authorization:
            headers["authorization"] = self.authorization
        if self.request_id:
            headers["x-request-id"] = self.request_id
        return headers


@runtime_checkable
class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[BaseModel]]

    async def run(self, args: Any, ctx: ToolContext) -> str: ...


class BaseTool(ABC):
    """Convenience base: keeps the settings and derives the JSON schema from ``Input``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    # A question and the arguments that answer it: shown to text-protocol models, which
    # copy a worked example far more reliably than they follow a schema.
    example: ClassVar[tuple[str, dict[str, Any]] | None] = None
    # A forced call of a search-like tool takes the user's words as its one argument
    # instead of asking the model to rephrase them (small models paraphrase badly).
    input_is_argument: ClassVar[bool] = False

    def __init__(self, settings: AgentServiceSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def run(self, args: Any, ctx: ToolContext) -> str:
        """Do the work; a ``ToolError`` becomes an error result the model sees."""


def parameters_schema(tool: Tool) -> dict[str, Any]:
    """The ``Input`` model as a JSON schema without pydantic's titles (less noise for the model)."""
    schema = tool.Input.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def openai_tool(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": parameters_schema(tool)},
    }


def single_string_field(tool: Tool) -> str | None:
    """The one required field when it is the only required one and a string, else None."""
    schema = parameters_schema(tool)
    required = schema.get("required", [])
    if len(required) != 1:
        return None
    prop = schema.get("properties", {}).get(required[0], {})
    return required[0] if prop.get("type") == "string" else None
