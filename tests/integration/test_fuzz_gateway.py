"""Fuzzing the gateway from its own OpenAPI spec: schemathesis against a real gateway.

    .venv/bin/pytest -q tests/integration/test_fuzz_gateway.py                           # CI: > 1,000 cases
    LATHE_FUZZ_EXAMPLES=1000 .venv/bin/pytest -q tests/integration/test_fuzz_gateway.py  # about 7,400

Every operation in the gateway's spec is one test here. Schemathesis sends each its
coverage cases (boundary values, wrong types, missing fields, unexpected methods) and
then ``LATHE_FUZZ_EXAMPLES`` Hypothesis cases (default 100), valid and invalid, over
HTTP to a real gateway process (uvicorn) in front of the OpenAI stub backend, with the
right key for the route (the admin key on admin routes): requests without a key, or
with the wrong one, are tests/integration/test_auth.py's. Two properties must hold for
every case:

- no 5xx, ever: the stub backend always answers, so a 5xx is the gateway's own fault;
- every 4xx carries OpenAI's error object, ``{"error": {"message", "type", "param",
  "code"}}``: the shape lathe.http_service.install_error_handlers emits and that the
  official SDKs parse.

``test_fuzz_sent_enough_cases`` counts the requests actually sent and asserts at least
1,000 (and 7 per ``LATHE_FUZZ_EXAMPLES``: five operations with a body and two with a
path parameter use them all).

The RAG and agent relay (``/v1/rag/...``, ``/v1/agents...``) is not in the spec (the
services behind it document their own APIs), so it gets a Hypothesis fuzz of its own,
in front of an echo upstream that always answers 200: there too a 5xx can only be the
gateway's, and the test checks that what reaches the upstream stays under the route's
prefix, with the caller's query and the gateway's own identity headers.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections import Counter
from urllib.parse import quote, unquote, urlencode

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st

from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings
from tests.integration.gateway_support import EchoUpstream, Gateway, Stub

pytestmark = [pytest.mark.integration]

PORTS = {"gateway": 27500, "metrics": 27509, "backend": 27501, "echo": 27502}
EXAMPLES = int(os.environ.get("LATHE_FUZZ_EXAMPLES", "100"))
MODELS = ["fuzz-model", "fuzz-embed"]
ERROR_FIELDS = {"message", "type", "param", "code"}
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no replays of old failures across runs: each prints its case as curl
    suppress_health_check=list(hypothesis.HealthCheck),
)

# The spec as the gateway builds it (the served /openapi.json is checked to be the same):
# schemathesis parametrizes at collection, before any gateway runs. No lifespan runs on
# this app, so its settings are never read: unvalidated defaults, whatever LATHE_* says.
SPEC = create_app(GatewayServiceSettings.model_construct(), serve_metrics=False).openapi()


def for_this_gateway(spec: dict) -> dict:
    """The spec as this deployment reads it: ``model`` one it serves, a canary's
    ``version`` one it has, ``max_tokens`` within its cap. Positive cases then reach the
    backend (streaming included) instead of nearly all stopping at 404 or 400, and the
    negative ones carry the unknown models and oversized limits. (A union of the
    narrow and the general schema would not do: Hypothesis folds the narrow branch
    into the general one and never draws from it.)"""
    spec = copy.deepcopy(spec)
    cap = GatewayServiceSettings.model_fields["max_tokens_cap"].default
    tokens = {"type": "integer", "minimum": 1, "maximum": cap}
    narrowed = {
        "model": {"type": "string", "enum": MODELS},
        "version": {"type": "string", "enum": ["1"]},
        "max_tokens": tokens,
        "max_completion_tokens": tokens,
    }
    for path in spec["paths"].values():
        for operation in path.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            for name, narrow in narrowed.items():
                if name in body.get("properties", {}):
                    nullable = {"type": "null"} in body["properties"][name].get("anyOf", [])
                    body["properties"][name] = {"anyOf": [narrow, {"type": "null"}]} if nullable else narrow
    return spec


schema = schemathesis.openapi.from_dict(for_this_gateway(SPEC))
SENT: dict[str, Counter[int]] = {}  # operation -> status -> cases


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz-stubs")
    backend = Stub(PORTS["backend"], "fuzz", logs)
    echo = EchoUpstream(PORTS["echo"], logs)
    routes = tmp_path_factory.mktemp("fuzz-routes") / "routes.json"
    routes.write_text(
        json.dumps({"models": {model: {"backends": [{"url": backend.url, "version": "1"}]} for model in MODELS}})
    )
    home = tmp_path_factory.mktemp("fuzz-gw")
    gateway = Gateway(
        home,
        PORTS["gateway"],
        PORTS["metrics"],
        routes,
        LATHE_GATEWAY_RAG_URL=echo.url,
        LATHE_GATEWAY_AGENT_URL=echo.url,
        # Rollouts read the registry: MLflow's own client on a database file, no server.
        LATHE_MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
    )
    gateway.user_name = "fuzz-user-" + secrets.token_hex(4)  # no fuzzed DELETE will name it
    gateway.user_key = gateway.create_key(gateway.user_name)
    yield gateway
    gateway.stop()
    echo.stop()
    backend.stop()


def problem_with(response) -> str | None:
    """What is wrong with a response to a fuzzed request, or None."""
    if response.status_code >= 500:
        return f"server error {response.status_code}: {response.text[:500]}"
    if response.status_code < 400:
        return None
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} without an OpenAI error object: {response.text[:500]}"
    if not isinstance(error, dict) or set(error) != ERROR_FIELDS:
        return f"{response.status_code} whose error object is not OpenAI's shape: {error!r}"
    if not isinstance(error["message"], str) or not error["message"] or not isinstance(error["type"], str):
        return f"{response.status_code} whose message or type is not a non-empty string: {error!r}"
    if not all(error[field] is None or isinstance(error[field], str) for field in ("param", "code")):
        return f"{response.status_code} whose param or code is neither a string nor null: {error!r}"
    return None


@schema.parametrize()
@SETTINGS
def test_fuzz(case, stack):
    key = stack.admin_key if case.path.startswith("/admin") else stack.user_key
    headers = {"Authorization": f"Bearer {key}"}
    response = case.call(base_url=stack.url, headers=headers, timeout=60)
    SENT.setdefault(case.operation.label, Counter())[response.status_code] += 1
    problem = problem_with(response)
    assert problem is None, f"{problem}\n  {case.as_curl_command(headers=headers, base_url=stack.url)}"


def test_fuzz_sent_enough_cases():
    operations = {result.ok().label for result in schema.get_all_operations()}
    if set(SENT) != operations:
        pytest.skip("counts the cases of a run of every test_fuzz case above")
    total = sum(n for statuses in SENT.values() for n in statuses.values())
    print(f"\nfuzz: {total} cases")
    for label, statuses in sorted(SENT.items()):
        print(f"{sum(statuses.values()):6d}  {label:32} {dict(sorted(statuses.items()))}")
    assert total >= max(1000, 7 * EXAMPLES), SENT
    # A run refused at the door (a broken key: all 401) would pass every check above.
    for label, statuses in SENT.items():
        assert set(statuses) - {401, 403}, f"{label}: only refusals {statuses}"
    for label in ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "POST /admin/keys"):
        assert any(200 <= status < 300 for status in SENT[label]), f"{label} never succeeded: {SENT[label]}"


def test_the_served_spec_is_the_one_fuzzed(stack):
    assert httpx.get(stack.url + "/openapi.json").json() == SPEC


# -- the RAG and agent relay ------------------------------------------------------------
PREFIXES = ["/v1/rag/", "/v1/agents/", "/v1/agents"]
SEGMENTS = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["%2e%2e", "%2E", ".%2e", "%2e.", "%3F", "%23", "%2F", "%25", "metrics", "health", "admin"]),
)


@st.composite
def relay_requests(draw) -> dict:
    prefix = draw(st.sampled_from(PREFIXES))
    path = prefix
    if prefix.endswith("/"):
        segments = draw(st.lists(SEGMENTS, min_size=1, max_size=5))
        # Plain text is percent-encoded as a client would; the sampled escapes go as they are.
        path += "/".join(s if s.startswith(("%", ".")) or s.isalpha() else quote(s, safe="") for s in segments)
    query = urlencode(draw(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3)))
    method = draw(st.sampled_from(["GET", "POST", "DELETE"] if prefix.endswith("/") else ["GET"]))
    body = draw(st.binary(max_size=2048)) if method == "POST" else b""
    return {"method": method, "path": path, "query": query, "body": body}


def test_fuzz_the_relay_to_rag_and_agents(stack):
    sent = Counter()
    # Headers only the gateway may set: the client's must be dropped, never trusted.
    spoofed = {"x-lathe-key-name": "admin", "x-lathe-allowed-tools": "shell"}

    @SETTINGS
    @hypothesis.given(relay_requests())
    def run(request: dict) -> None:
        url = request["path"] + ("?" + request["query"] if request["query"] else "")
        headers = {"Authorization": f"Bearer {stack.user_key}", **spoofed}
        response = http.request(request["method"], url, content=request["body"], headers=headers)
        sent[response.status_code] += 1
        problem = problem_with(response)
        assert problem is None, f"{problem}\n  {request['method']} {url}"
        decoded = unquote(request["path"])
        if response.status_code == 404:
            # Starlette's {path:path} is ".*", which stops at a newline: no route matched.
            assert "\n" in decoded.rstrip("\n"), response.text
            return
        if response.status_code == 400:
            assert any(segment in (".", "..") for segment in decoded.split("/")), response.text
            return
        assert response.status_code == 200, response.text
        echoed = response.json()
        prefix = next(p for p in PREFIXES if request["path"].startswith(p))
        assert echoed["raw_path"].startswith(prefix.rstrip("/")), (url, echoed)
        assert unquote(echoed["raw_path"]) == decoded, (url, echoed)
        assert echoed["query"] == request["query"], (url, echoed)
        assert echoed["method"] == request["method"] and echoed["body_bytes"] == len(request["body"])
        assert echoed["headers"]["x-lathe-key-name"] == stack.user_name
        assert echoed["headers"]["x-lathe-allowed-tools"] == "*"  # the key's: any tool
        assert echoed["headers"]["authorization"] == f"Bearer {stack.user_key}"

    with httpx.Client(base_url=stack.url, timeout=30) as http:
        run()
    print(f"\nrelay: {sum(sent.values())} cases, statuses {dict(sent)}")
    assert sum(sent.values()) >= EXAMPLES // 2, sent


def test_the_gateway_came_through(stack):
    """After thousands of hostile requests: still serving, and no key in its log."""
    reply = httpx.post(
        stack.url + "/v1/chat/completions",
        json={"model": "fuzz-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"Authorization": f"Bearer {stack.user_key}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    logs = stack.log_path.read_text()
    assert stack.user_key not in logs and stack.admin_key not in logs
