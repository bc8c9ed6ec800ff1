"""A real MLflow registry on a SQLite file, and a real OpenAI-compatible server on loopback,
for the gate's and the harness's tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from lathe.registry import ModelRegistry


@pytest.fixture
def uri(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow sets it too; this restores it afterwards
    monkeypatch.setenv("LATHE_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    mlflow.set_tracking_uri(uri)  # the fluent API keeps the last URI any earlier test set
    return uri


@pytest.fixture
def registry(uri):
    return ModelRegistry(uri)


@pytest.fixture
def chat_server():
    """``chat_server(respond)``: the /v1 URL of a server whose chat answers are ``respond(body)``,
    a (content, headers) pair; stopped after the test."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    servers = []

    def start(respond: Callable[[dict], tuple[str, dict]]) -> str:
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            content, headers = respond(body)
            message = {"role": "assistant", "content": content}
            return JSONResponse(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                },
                headers=headers,
            )

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the stub server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def folder(tmp_path):
    """A model folder as the registry takes it: a config and (empty) weights."""
    path = tmp_path / "weights"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    return path
