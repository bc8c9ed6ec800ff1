"""Inputs that once made the gateway answer 500 or reach past what it forwards.

Each was found by the fuzz suite (tests/integration/test_fuzz_gateway.py) or while
writing it; here they run in process, in milliseconds, against ``create_app``.
"""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.deps import MAX_JSON_DEPTH
from services.gateway.schemas import MAX_LIMIT
from services.gateway.settings import GatewayServiceSettings

ADMIN_KEY = "admin-" + "k" * 24
CLOSED = "http://127.0.0.1:9"  # nothing listens: no request here should get that far


class _Upstream:
    """Stands in for the RAG service's HTTP session: records the URL, answers 200."""

    def __init__(self) -> None:
        self.urls: list = []

    async def request(self, method, url, data=None, headers=None):
        self.urls.append(url)
        return _Answer()


class _Answer:
    def __init__(self) -> None:
        self.status = 200
        self.headers = {"content-type": "application/json"}

    async def read(self) -> bytes:
        return b"{}"

    def release(self) -> None:
        pass


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # a developer's LATHE_GATEWAY_DATABASE_URL stays out
        for name in [name for name in os.environ if name.startswith("LATHE_")]:
            env.delenv(name)
        settings = GatewayServiceSettings(
            home=tmp_path_factory.mktemp("gw"),
            admin_key=ADMIN_KEY,
            default_model="m",
            default_backend_url=CLOSED,
            rag_url=CLOSED,
            agent_url=CLOSED,
            health_interval_s=60,
        )
    assert settings.home.name.startswith("gw"), "would write into the repository's .lathe"
    with TestClient(create_app(settings, serve_metrics=False), raise_server_exceptions=False) as c:
        c.headers["authorization"] = f"Bearer {ADMIN_KEY}"
        created = c.post("/admin/keys", json={"name": "user"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        c.user_headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        yield c


def _chat(client, raw: bytes):
    return client.post("/v1/chat/completions", content=raw, headers=client.user_headers)


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def _nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_json_nested_past_the_recursion_limit_is_a_400(client):
    error = _error(_chat(client, b"[" * 100_000 + b"]" * 100_000), 400)
    assert "nested deeper" in error["message"]


def test_json_nested_past_the_limit_but_parseable_is_a_400(client):
    content = f"[{_nested(MAX_JSON_DEPTH)}]"
    raw = f'{{"model": "m", "messages": [{{"role": "user", "content": {content}}}]}}'
    assert "nested deeper" in _error(_chat(client, raw.encode()), 400)["message"]


def test_json_nested_within_the_limit_is_accepted(client):
    content = f"[{_nested(MAX_JSON_DEPTH - 4)}]"
    raw = f'{{"model": "unknown", "messages": [{{"role": "user", "content": {content}}}]}}'
    assert _error(_chat(client, raw.encode()), 404)["code"] == "model_not_found"  # got past read_json


def test_a_lone_surrogate_escape_is_a_400(client):
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'
    assert "surrogate" in _error(_chat(client, raw), 400)["message"]
    raw = b'{"name": "s", "models": ["\\udfff"]}'
    response = client.post("/admin/keys", content=raw, headers={"content-type": "application/json"})
    assert "surrogate" in _error(response, 400)["message"]


def test_an_escaped_surrogate_pair_is_accepted(client):
    raw = b'{"model": "unknown", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    assert _error(_chat(client, raw), 404)["code"] == "model_not_found"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client, constant):
    raw = f'{{"model": "m", "messages": [{{"role": "user", "content": "x"}}], "temperature": {constant}}}'
    assert "not valid JSON" in _error(_chat(client, raw.encode()), 400)["message"]


def test_an_expiry_that_leaves_the_calendar_in_utc_is_a_400(client):
    for expires in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00"):
        response = client.post("/admin/keys", json={"name": "far", "expires_at": expires})
        assert _error(response, 400)["param"] == "expires_at"


@pytest.mark.parametrize("field", ["rpm", "tpm", "budget", "max_tokens"])
def test_a_limit_past_64_bits_is_a_400(client, field):
    response = client.post("/admin/keys", json={"name": f"big-{field}", field: 10**30})
    assert _error(response, 400)["param"] == field
    response = client.post("/admin/keys", json={"name": f"max-{field}", field: MAX_LIMIT})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path", ["/v1/rag/%2e%2e/%2e%2e/metrics", "/v1/rag/%2E/x", "/v1/agents/%2E%2E", "/v1/agents/a/%2e%2e/%2e%2e/health"]
)
def test_the_relay_refuses_dot_segments(client, path):
    upstream = _Upstream()
    client.app.state.forwarder.http = upstream
    response = client.get(path, headers=client.user_headers)
    assert "segments" in _error(response, 400)["message"]
    assert upstream.urls == []


def test_the_relay_keeps_encoded_characters_encoded(client):
    upstream = _Upstream()
    client.app.state.forwarder.http = upstream
    response = client.get("/v1/rag/a%3Fb%23c/d%20e?q=%20x&r=1", headers=client.user_headers)
    assert response.status_code == 200, response.text
    (url,) = upstream.urls
    assert url.raw_path == "/v1/rag/a%3Fb%23c/d%20e"
    assert url.raw_query_string == "q=%20x&r=1"


def test_the_relay_keeps_a_trailing_newline(client):
    """Starlette's {path:path} drops it; the upstream must still get the path as sent."""
    upstream = _Upstream()
    client.app.state.forwarder.http = upstream
    assert client.get("/v1/agents/a%0A", headers=client.user_headers).status_code == 200
    assert upstream.urls[0].raw_path == "/v1/agents/a%0A"


def test_the_spec_documents_every_json_body():
    spec = create_app(GatewayServiceSettings.model_construct(), serve_metrics=False).openapi()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/admin/keys", "/admin/canary"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] and "$ref" not in json.dumps(body)
