"""Response caches, per key opt-in: an exact hit, a semantic hit from the RAG service's real
MiniLM (served over HTTP as the gateway reaches it), misses across a promotion and across
teams, tokens counted on a hit, and the settings refused out of range."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
import yaml
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings
from tests.support.http_backends import JsonHandler, chat_completion, serve, serve_app
from tests.unit.gateway.test_guardrails import ADMIN_KEY, _key

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
LEN = "What does the len() function return in Python?"
LEN_AGAIN = "In Python, what does the len() function return?"
OPEN = "How do I read a text file line by line?"


class _VersionedBackend(JsonHandler):
    """Answers with its version and a running count, so a test sees who answered and how often."""

    version: ClassVar[str] = ""
    answered: ClassVar[int] = 0

    def do_POST(self) -> None:
        self.read_json()
        cls = type(self)
        cls.answered += 1
        usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        self.send_json(chat_completion(f"v{cls.version} answer #{cls.answered}", "m", usage))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The RAG service (real MiniLM) on a port: the gateway asks its /v1/embeddings."""
    from services.rag.app import create_app as create_rag
    from services.rag.settings import RagServiceSettings

    home = tmp_path_factory.mktemp("rag-home")
    with serve_app(create_rag(RagServiceSettings(LATHE_HOME=str(home), gateway_url="http://127.0.0.1:9"))) as url:
        yield url


@pytest.fixture
def versions():
    """Version 1 serves model m; version 2 is deployed beside it with no traffic yet."""
    made = [type(f"V{v}", (_VersionedBackend,), {"version": v, "answered": 0}) for v in ("1", "2")]
    with serve(made[0]) as first, serve(made[1]) as second:
        yield made, [first, second]


def _gateway(tmp_path, urls: list[str], encoder: str, **settings) -> TestClient:
    backends = [{"url": urls[0], "version": "1", "weight": 100}, {"url": urls[1], "version": "2", "weight": 0}]
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump({"models": {"m": {"backends": backends}}}))
    config = GatewayServiceSettings(
        LATHE_HOME=str(tmp_path), admin_key=ADMIN_KEY, routes_file=str(tmp_path / "routes.yaml"), rag_url=encoder,
        health_interval_s=60, exact_prompt_count=False, **settings,
    )  # fmt: skip
    return TestClient(create_app(config, serve_metrics=False))


def _ask(client: TestClient, key: str, content: str, **extra):
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 16, **extra}
    response = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.headers.get("x-lathe-cache"), response.json()["choices"][0]["message"]["content"]


def _counted(client: TestClient, kind: str, result: str) -> float:
    return client.app.state.metrics.cache_requests.labels(kind=kind, result=result)._value.get()


def test_an_exact_hit_answers_again_counts_its_tokens_and_is_audited(tmp_path, versions, encoder):
    (v1, _), urls = versions
    with _gateway(tmp_path, urls, encoder) as client:
        key = _key(client, "exact", cache=["exact"])
        assert _ask(client, key, LEN) == (None, "v1 answer #1")
        assert _ask(client, key, LEN) == ("exact", "v1 answer #1")  # the backend was not asked again
        assert _ask(client, key, LEN, temperature=0.2) == (None, "v1 answer #2")  # another request
        assert _ask(client, key, LEN, stream=False, user="u1") == (
            "exact",
            "v1 answer #1",
        )  # fields that change nothing
        assert v1.answered == 2 and _counted(client, "exact", "hit") == 2 and _counted(client, "exact", "miss") == 2
        saved = client.app.state.metrics.cache_saved.labels(kind="exact")._value.get()
        assert saved > 0  # what answering took, once per hit
        usage = client.get("/admin/keys/exact/usage", headers=ADMIN).json()
        assert usage["requests"] == 4 and usage["total_tokens"] == 4 * 17  # a hit counts as answered (the default)
        deadline = time.monotonic() + 10
        while len(rows := client.get("/admin/audit", params={"key": "exact"}, headers=ADMIN).json()["data"]) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [r["cache_hit"] for r in rows] == [False, True, False, True]
        plain = _key(client, "plain")
        assert _ask(client, plain, LEN) == (None, "v1 answer #3")  # no cache unless the key opts in


def test_a_semantic_hit_and_a_miss_across_a_promotion_and_across_teams(tmp_path, versions, encoder):
    (v1, v2), urls = versions
    with _gateway(tmp_path, urls, encoder, cache_hits_count_tokens=False) as client:
        for team in ("alpha", "beta"):
            assert client.post("/admin/teams", json={"name": team}, headers=ADMIN).status_code == 201
        key = _key(client, "semantic", cache=["semantic"], team="alpha")
        assert _ask(client, key, LEN) == (None, "v1 answer #1")
        assert _ask(client, key, LEN_AGAIN) == ("semantic", "v1 answer #1")  # said differently, meant the same
        assert _ask(client, key, OPEN) == (None, "v1 answer #2")  # another question
        assert _ask(client, key, LEN, max_tokens=64) == (None, "v1 answer #3")  # the same words, another request
        other_team = _key(client, "semantic-beta", cache=["semantic"], team="beta")
        assert _ask(client, other_team, LEN) == (None, "v1 answer #4")  # a team never sees another's answers

        promoted = client.post("/admin/canary", json={"model": "m", "version": "2", "weight": 100}, headers=ADMIN)
        assert promoted.status_code == 200, promoted.text
        assert _ask(client, key, LEN_AGAIN) == (None, "v2 answer #1")  # the new version answers, not the cache
        assert _ask(client, key, LEN) == ("semantic", "v2 answer #1")
        assert (v1.answered, v2.answered) == (4, 1)
        usage = client.get("/admin/keys/semantic/usage", headers=ADMIN).json()
        assert usage["requests"] == 6 and usage["total_tokens"] == 4 * 17  # hits counted nothing, as set


def test_cache_settings_and_names_are_checked(tmp_path, versions, encoder):
    _, urls = versions
    with pytest.raises(ValueError, match="semantic_cache_threshold"):
        GatewayServiceSettings(LATHE_HOME=str(tmp_path), semantic_cache_threshold=1.5)
    with _gateway(tmp_path, urls, encoder) as client:
        refused = client.post("/admin/keys", json={"name": "k", "cache": ["fuzzy"]}, headers=ADMIN)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "cache.0"
