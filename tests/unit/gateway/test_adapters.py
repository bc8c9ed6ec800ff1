"""LoRA adapters at the gateway: asked for by their registered name, sent to their base model's
backends under that name, limited by keys and counted like any model; learned from a Lathe
inference service's /health or named in the routes file.

The backend is a local stub that records the model each request names."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings, RoutesConfig
from tests.support.http_backends import JsonHandler, chat_completion, serve
from tests.unit.gateway.test_guardrails import ADMIN_KEY, _key

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


class _Engine(JsonHandler):
    """A Lathe inference service serving model m and adapter duck: /health lists the adapter."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.send_json({"status": "ok", "version": "3", "adapters": [{"name": "duck", "version": "2"}]})

    def do_POST(self) -> None:
        model = self.read_json()["model"]
        type(self).seen.append(model)
        self.send_json(chat_completion(f"{model} answers", model, USAGE))


@pytest.fixture
def engine():
    _Engine.seen = []
    with serve(_Engine) as url:
        yield url


def _ask(client: TestClient, key: str, model: str):
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    return client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def _gateway(tmp_path, **settings) -> TestClient:
    config = GatewayServiceSettings(
        LATHE_HOME=str(tmp_path), admin_key=ADMIN_KEY, health_interval_s=0.2, exact_prompt_count=False,
        rag_url=None, agent_url=None, **settings,
    )  # fmt: skip
    return TestClient(create_app(config, serve_metrics=False))


def test_an_adapter_named_in_the_routes_is_served_by_its_base_under_its_own_name(tmp_path, engine):
    routes = {"models": {"m": {"backends": [{"url": engine}], "adapters": ["pirate"]}}}
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    with _gateway(tmp_path, routes_file=tmp_path / "routes.yaml") as client:
        key = _key(client, "pirate-only", models=["pirate"])
        answer = _ask(client, key, "pirate")
        assert answer.status_code == 200 and answer.json()["model"] == "pirate"
        assert _Engine.seen == ["pirate"]  # the base's backend, asked for the adapter by name
        refused = _ask(client, key, "m")  # the key is limited to the adapter
        assert refused.status_code == 403 and _Engine.seen == ["pirate"]
        listed = client.get("/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]
        assert [(m["id"], m.get("parent")) for m in listed] == [("pirate", "m")]
        tokens = client.app.state.metrics.tokens
        assert tokens.labels(key="pirate-only", model="pirate", direction="out")._value.get() == 3
        assert client.app.state.metrics.requests.labels(model="pirate", route="chat", status="200")._value.get() == 1


def test_adapters_a_lathe_inference_service_lists_are_learned_from_its_health(tmp_path, engine):
    with _gateway(tmp_path, default_model="m", default_backend_url=engine) as client:
        key = _key(client, "anyone")
        deadline = time.monotonic() + 10
        while "duck" not in client.app.state.router.adapters and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = _ask(client, key, "duck")
        assert answer.status_code == 200, answer.text
        assert _ask(client, key, "m").status_code == 200 and _Engine.seen == ["duck", "m"]
        assert answer.headers["x-lathe-backend-version"] == "3"  # the base version that served it
        unknown = _ask(client, key, "goose")
        assert unknown.status_code == 404 and "models: duck, m" in unknown.json()["error"]["message"]


def test_an_adapter_may_not_shadow_a_model_or_belong_to_two(engine):
    backends = [{"url": engine}]
    with pytest.raises(ValidationError, match=r"models.m.adapters: 'n' is already n"):
        RoutesConfig.model_validate({"models": {"m": {"backends": backends, "adapters": ["n"]},
                                                "n": {"backends": backends}}})  # fmt: skip
    with pytest.raises(ValidationError, match=r"models.n.adapters: 'a' is already an adapter of m"):
        RoutesConfig.model_validate({"models": {"m": {"backends": backends, "adapters": ["a"]},
                                                "n": {"backends": backends, "adapters": ["a"]}}})  # fmt: skip
