"""A stream that a backend breaks off: the client's last event, the backend's breaker.

The backend is a small real HTTP server in a thread that streams two chunks and then
fails the way Lathe's inference service does when its vLLM dies mid-stream (an
``upstream_error`` event) or the way a server refuses one request (another code).
The same fault with real vLLM is tests/integration/test_faults.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings

pytestmark = pytest.mark.fault

ADMIN_KEY = "admin-" + "s" * 24


def _chunk(text: str) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _FailingBackend(BaseHTTPRequestHandler):
    error_code = "upstream_error"

    def do_GET(self) -> None:  # /health
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        error = {"error": {"message": "engine stopped mid-stream", "type": "upstream_error", "param": None,
                           "code": self.error_code}}  # fmt: skip
        self.wfile.write(_chunk("Hello") + _chunk(" world") + b"data: " + json.dumps(error).encode() + b"\n\n")
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateway(tmp_path, backend):
    url = f"http://127.0.0.1:{backend.server_port}"
    settings = GatewayServiceSettings(
        LATHE_HOME=str(tmp_path),
        admin_key=ADMIN_KEY,
        default_model="m",
        default_backend_url=url,
        health_interval_s=60,
        breaker_failures=3,
        breaker_reset_s=5,
    )
    with TestClient(create_app(settings, serve_metrics=False)) as client:
        client.headers["authorization"] = f"Bearer {ADMIN_KEY}"
        client.backend_url = url
        client.key = client.post("/admin/keys", json={"name": "user"}).json()["key"]
        yield client


def _stream(gateway) -> list[dict]:
    events = []
    with gateway.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8},
        headers={"authorization": f"Bearer {gateway.key}"},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def _breaker(gateway) -> tuple[str, float]:
    route = gateway.get("/admin/routes").json()["m"][0]
    gauge = gateway.app.state.metrics.breaker_state.labels(backend=gateway.backend_url)._value.get()
    return route["breaker"], gauge


def test_a_backend_whose_engine_died_mid_stream_ends_the_stream_with_its_error_and_opens_its_breaker(gateway):
    events = _stream(gateway)
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == ["Hello", " world"]
    error = events[-1]["error"]  # the last event, in OpenAI's shape; nothing follows it
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "upstream_error"
    assert _breaker(gateway) == ("open", 2.0)  # at once, not after three such streams
    refused = gateway.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {gateway.key}"},
    )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_unavailable"
    assert gateway.get("/health").status_code == 200


def test_an_error_event_about_one_request_counts_once(gateway, monkeypatch):
    monkeypatch.setattr(_FailingBackend, "error_code", "invalid_request")
    assert _stream(gateway)[-1]["error"]["code"] == "invalid_request"
    assert _breaker(gateway) == ("closed", 0.0)  # one failure of three
    _stream(gateway)
    _stream(gateway)
    assert _breaker(gateway) == ("open", 2.0)
