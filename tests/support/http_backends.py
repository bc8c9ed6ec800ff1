"""Small HTTP servers for gateway tests, in this process: JSON backends on a free port
(``JsonHandler`` + ``serve``) and Lathe's own FastAPI services under uvicorn (``serve_app``)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_completion(content: str, model: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    """An OpenAI chat completion answering ``content``."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    answer = {"id": "chatcmpl-test", "object": "chat.completion", "model": model, "choices": [choice]}
    return {**answer, "usage": usage} if usage is not None else answer


class JsonHandler(BaseHTTPRequestHandler):
    """A backend that reads and answers JSON, quietly; ``GET`` answers ``{}`` (a health check)."""

    def do_GET(self) -> None:
        self.send_json({})

    def read_json(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")

    def send_json(self, body: dict[str, Any], status: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a free port, in threads, for the block; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None, start_timeout_s: float = 120.0) -> Iterator[str]:
    """An ASGI app under uvicorn in a thread, once it has started (its lifespan run); its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s  # the RAG service loads MiniLM at start-up
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"{type(app).__name__} on {port} did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
