"""A scripted OpenAI-compatible gateway, injected into the real agent app as an httpx transport.

    gw = ScriptedGateway(['Thought: …\\nAction: calculator\\nAction Input: {"expression": "2+2"}',
                          "Thought: done\\nFinal Answer: 4"])
    client = make_client(gw)                  # fastapi TestClient over create_app(settings, transport=gw)

Each chat completion pops the next scripted reply: a string (the assistant's content),
a dict (a whole assistant message, e.g. with tool_calls) or a callable taking the
request body. Every request is kept for assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from services.agent.app import create_app
from services.agent.settings import AgentServiceSettings
from services.agent.tools.base import BaseTool, ToolContext

GATEWAY = "http://gateway.test"

Reply = str | dict[str, Any] | Callable[[dict[str, Any]], Any]


class ScriptedGateway(httpx.MockTransport):
    def __init__(self, replies: list[Reply] | None = None) -> None:
        super().__init__(self._handle)
        self.replies = list(replies or [])
        self.chat_requests: list[dict[str, Any]] = []
        self.chat_headers: list[httpx.Headers] = []
        self.rag_requests: list[dict[str, Any]] = []
        self.rag_chunks: list[dict[str, Any]] = []
        self.web: dict[str, httpx.Response] = {}
        self.web_requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "gateway.test" and request.url.path == "/v1/chat/completions":
            body = json.loads(request.content)
            self.chat_requests.append(body)
            self.chat_headers.append(request.headers)
            if not self.replies:
                return httpx.Response(500, json={"error": {"message": "script ran out of replies"}})
            reply = self.replies.pop(0)
            if callable(reply):
                reply = reply(body)
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
            return httpx.Response(
                200,
                json={
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                },
            )
        if request.url.host == "gateway.test" and request.url.path == "/v1/rag/retrieve":
            body = json.loads(request.content)
            self.rag_requests.append({"body": body, "authorization": request.headers.get("authorization")})
            data = {"object": "list", "collection": body["collection"], "data": self.rag_chunks[: body["top_k"]]}
            return httpx.Response(200, json=data)
        self.web_requests.append(request)
        return self.web.get(str(request.url), httpx.Response(404, text="not found"))

    def last_messages(self) -> list[dict[str, Any]]:
        return self.chat_requests[-1]["messages"]


class SpyTool(BaseTool):
    """Records every run; the loop must never reach it with a call it should refuse."""

    name = "spy"
    description = "Echo a text."
    calls: list[Any]

    def __init__(self, settings: AgentServiceSettings, name: str = "spy", delay_s: float = 0.0) -> None:
        super().__init__(settings)
        self.name = name
        self.delay_s = delay_s
        self.calls = []

    class Input(BaseModel):
        model_config = {"extra": "forbid"}
        text: str
        times: int = 1

    async def run(self, args: Input, ctx: ToolContext) -> str:
        self.calls.append(args)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return args.text * args.times


@pytest.fixture
def agent_settings(tmp_path, monkeypatch, clean_lathe_env) -> Callable[..., AgentServiceSettings]:
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))

    def build(**overrides: Any) -> AgentServiceSettings:
        return AgentServiceSettings(gateway_url=GATEWAY, **overrides)

    return build


@pytest.fixture
def make_client(agent_settings):
    clients: list[TestClient] = []

    def build(
        gateway: ScriptedGateway, *, settings: AgentServiceSettings | None = None, tools: dict | None = None, **kw
    ) -> TestClient:
        client = TestClient(create_app(settings or agent_settings(**kw), transport=gateway, tools=tools))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def metric(client: TestClient, name: str, **labels: str) -> float:
    """A sample's value from the app's own registry (0 when absent)."""
    value = client.app.state.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def action(tool: str, arguments: dict[str, Any] | str, thought: str = "I should use a tool.") -> str:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {args}"


def final(answer: str, thought: str = "I know the answer.") -> str:
    return f"Thought: {thought}\nFinal Answer: {answer}"
