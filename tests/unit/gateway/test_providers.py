"""Outside providers and fallback chains: the local backend first, an OpenAI-compatible
provider when it is down, with the breaker deciding; the provider's key sent to it and kept
out of logs, metrics, the audit log and the database.

The provider is a local stub speaking OpenAI's API: a real provider cannot be reached from here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from fastapi.testclient import TestClient

from lathe.errors import ConfigError
from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings
from tests.support.http_backends import JsonHandler, chat_completion, free_port, serve
from tests.unit.gateway.test_guardrails import ADMIN_KEY, _key

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
SECRET = "sk-provider-" + "q" * 32


class _Provider(JsonHandler):
    """OpenAI's chat completions, for requests that carry the right key."""

    seen: ClassVar[list[tuple[str, dict]]] = []  # (authorization, body)

    def do_POST(self) -> None:
        body = self.read_json()
        type(self).seen.append((self.headers.get("authorization", ""), body))
        if self.headers.get("authorization") != f"Bearer {SECRET}":
            self.send_json({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
            return
        usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
        self.send_json(chat_completion(f"the provider's {body['model']} answers", body["model"], usage))


class _Local(JsonHandler):
    """The local vLLM: healthy on /health; its answers fail with 500 while ``failing``."""

    failing: ClassVar[bool] = False

    def do_POST(self) -> None:
        self.read_json()
        if type(self).failing:
            self.send_json({"error": {"message": "engine dead", "type": "server_error"}}, 500)
            return
        self.send_json(chat_completion("the local model answers", "m"))


@pytest.fixture
def local():
    _Local.failing = False
    with serve(_Local) as url:
        yield url


@pytest.fixture
def provider():
    _Provider.seen = []
    with serve(_Provider) as url:
        yield url


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: the local vLLM is gone


def _routes(tmp_path, local: str, provider: str, **provider_backend) -> str:
    backend = {"url": provider, "provider": "openai", "api_key_env": "LATHE_TEST_OPENAI_KEY",
               "upstream_model": "gpt-4o-mini", **provider_backend}  # fmt: skip
    routes = {"models": {"m": {"backends": [{"url": local}], "fallback": ["m-outside"]},
                         "m-outside": {"backends": [backend]}}}  # fmt: skip
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    return str(tmp_path / "routes.yaml")


def _gateway(tmp_path, routes: str) -> TestClient:
    config = GatewayServiceSettings(
        LATHE_HOME=str(tmp_path), admin_key=ADMIN_KEY, routes_file=routes, health_interval_s=60,
        exact_prompt_count=False, breaker_failures=2, breaker_reset_s=300, retries=0,
    )  # fmt: skip
    return TestClient(create_app(config, serve_metrics=False))


def _ask(client: TestClient, key: str):
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    return client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def test_the_provider_takes_over_when_the_local_backend_fails(tmp_path, local, provider, monkeypatch, caplog):
    monkeypatch.setenv("LATHE_TEST_OPENAI_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    _Local.failing = True  # healthy to its health check, failing every answer
    with _gateway(tmp_path, _routes(tmp_path, local, provider)) as client:
        key = _key(client, "fallback-user", models=["m"])
        answers = [_ask(client, key) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, answers[0].text
        first = answers[0]
        assert first.headers["x-lathe-provider"] == "openai"
        assert first.json()["model"] == "m"  # the client asked for m, and is answered as m
        assert first.json()["choices"][0]["message"]["content"] == "the provider's gpt-4o-mini answers"
        assert all(auth == f"Bearer {SECRET}" for auth, _ in _Provider.seen) and len(_Provider.seen) == 4
        assert all(body["model"] == "gpt-4o-mini" for _, body in _Provider.seen)  # the provider's own name

        metrics = client.app.state.metrics
        assert metrics.fallbacks.labels(model="m", fallback="m-outside")._value.get() == 4
        assert metrics.provider_requests.labels(provider="openai", status="200")._value.get() == 4
        # Two failures open the local backend's breaker: later requests go straight to the provider.
        local_errors = sum(s.value for m in metrics.upstream_errors.collect() for s in m.samples
                           if s.name.endswith("_total") and "openai" not in s.labels["backend"])  # fmt: skip
        assert local_errors == 2
        assert client.get("/admin/routes", headers=ADMIN).json()["m"][0]["breaker"] == "open"

        usage = client.get("/admin/keys/fallback-user/usage", headers=ADMIN).json()
        assert usage["requests"] == 4 and usage["total_tokens"] == 4 * 13
        written = (tmp_path / "gateway" / "gateway.db").read_bytes().decode("latin-1") + caplog.text
        written += json.dumps(client.get("/admin/routes", headers=ADMIN).json())
        assert SECRET not in written and "q" * 32 not in written


def test_the_local_backend_serves_while_it_is_up_and_a_gone_one_falls_back_at_once(
    tmp_path, local, provider, monkeypatch
):
    monkeypatch.setenv("LATHE_TEST_OPENAI_KEY", SECRET)
    with _gateway(tmp_path, _routes(tmp_path, local, provider)) as client:
        answer = _ask(client, _key(client, "local-user"))
        assert answer.status_code == 200 and "x-lathe-provider" not in answer.headers
        assert answer.json()["choices"][0]["message"]["content"] == "the local model answers" and not _Provider.seen
    gone = tmp_path / "gone"
    gone.mkdir()
    with _gateway(gone, _routes(gone, _dead_url(), provider)) as client:
        # Its health check failed at start-up: no request waits on it.
        answer = _ask(client, _key(client, "gone-user"))
        assert answer.status_code == 200 and answer.headers["x-lathe-provider"] == "openai"
        assert client.app.state.metrics.fallbacks.labels(model="m", fallback="m-outside")._value.get() == 1


def test_a_provider_without_credentials_is_refused_at_start_up(tmp_path, provider, monkeypatch):
    monkeypatch.delenv("LATHE_TEST_OPENAI_KEY", raising=False)
    unset = pytest.raises(ConfigError, match="needs its API key in LATHE_TEST_OPENAI_KEY, which is not set")
    with unset, _gateway(tmp_path, _routes(tmp_path, _dead_url(), provider)):
        pass
    unnamed = _routes(tmp_path, _dead_url(), provider, api_key_env=None)
    with pytest.raises(ValueError, match="provider 'openai' needs api_key_env"):
        GatewayServiceSettings(LATHE_HOME=str(tmp_path), routes_file=unnamed).load_routes()
    routes = yaml.safe_load(Path(_routes(tmp_path, _dead_url(), provider)).read_text())
    routes["models"]["m"]["fallback"] = ["nowhere"]
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    with pytest.raises(ValueError, match=r"models.m.fallback: 'nowhere' is not another model"):
        GatewayServiceSettings(LATHE_HOME=str(tmp_path), routes_file=str(tmp_path / "routes.yaml")).load_routes()
