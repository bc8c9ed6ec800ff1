"""Every route of the gateway refuses whoever has no right to it, found from the app itself.

    .venv/bin/pytest -q tests/integration/test_auth.py

The routes are enumerated from ``create_app(...)`` (methods and paths, the RAG and
agent relay included), so a route added tomorrow is covered without touching this
file. Public are only the health routes and FastAPI's own docs (the spec of an API
whose shape is OpenAI's); the metrics port is separate and has no API route at all.
Every other route, against a real gateway process:

- without a key, with a wrong one (as a Bearer token or as ``x-api-key``), with a
  malformed header, with a revoked key and with an expired one: 401 in OpenAI's
  error shape, code ``invalid_api_key`` (on admin routes too: a revoked or expired
  user key is no key, not a user key without the right);
- admin routes with a valid user key: 403, code ``permission_denied``;
- and with the right key (the admin key on admin routes) no route answers 401 or
  403: the enumeration reaches live handlers, not 404s.

Afterwards none of the keys used appears in the gateway's log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings
from tests.integration.gateway_support import EchoUpstream, Gateway, Stub

pytestmark = [pytest.mark.integration]

PORTS = {"gateway": 27520, "metrics": 27529, "backend": 27521, "echo": 27522}
HEALTH = {"/health", "/ready"}


def public_paths(app: FastAPI) -> set[str]:
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return HEALTH | {path for path in docs if path}


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, those left out of the spec included."""
    try:
        from fastapi.routing import iter_route_contexts  # routers included lazily (FastAPI ≥ 0.16x)

        routes = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":  # no body to check; the GET beside it is checked
                found.add((method, route.path))
    return sorted(found, key=lambda route: (route[1], route[0]))


# Only enumerated, never started: its settings are never read (whatever LATHE_* says).
APP = create_app(GatewayServiceSettings.model_construct(), serve_metrics=False)
PUBLIC = public_paths(APP)
PROTECTED = [(method, path) for method, path in app_routes(APP) if path not in PUBLIC]
ADMIN = {(method, path) for method, path in PROTECTED if path.startswith("/admin")}
WRONG_KEYS = ["lk-" + secrets.token_urlsafe(30) for _ in range(2)]
# Refused outright, each as a request carries it.
NOT_KEYS = {
    "no key": {},
    "wrong key": {"Authorization": f"Bearer {WRONG_KEYS[0]}"},
    "wrong x-api-key": {"x-api-key": WRONG_KEYS[1]},
    "bare bearer": {"Authorization": "Bearer"},
    "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
}
DEAD_KEYS = ["revoked", "expired"]


def concrete(path: str) -> str:
    """A request path for a route's template: every parameter filled with a plain word."""
    return re.sub(r"\{[^}]+\}", "someone", path)


def send(gateway: Gateway, method: str, path: str, headers: dict) -> httpx.Response:
    body = json.dumps({"model": "auth-model", "messages": [{"role": "user", "content": "hi"}]})
    content = body if method in ("POST", "PUT", "PATCH") else None
    headers = {**headers, "content-type": "application/json"} if content else headers
    return httpx.request(method, gateway.url + concrete(path), content=content, headers=headers, timeout=30)


def assert_refused(response: httpx.Response, status: int, secret: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == ("invalid_api_key" if status == 401 else "permission_denied")
    if secret:
        assert secret not in response.text


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    logs = tmp_path_factory.mktemp("auth-stubs")
    backend = Stub(PORTS["backend"], "auth", logs)
    echo = EchoUpstream(PORTS["echo"], logs)
    routes = tmp_path_factory.mktemp("auth-routes") / "routes.json"
    routes.write_text(json.dumps({"models": {"auth-model": {"backends": [{"url": backend.url}]}}}))
    gw = Gateway(
        tmp_path_factory.mktemp("auth-gw"),
        PORTS["gateway"],
        PORTS["metrics"],
        routes,
        LATHE_GATEWAY_RAG_URL=echo.url,
        LATHE_GATEWAY_AGENT_URL=echo.url,
    )
    gw.user = gw.create_key("auth-user")
    gw.revoked = gw.create_key("auth-revoked")
    assert gw.admin("DELETE", "/admin/keys/auth-revoked").status_code == 200
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    gw.expired = gw.create_key("auth-expired", expires_at=past)
    yield gw
    gw.stop()
    echo.stop()
    backend.stop()


def test_the_enumeration_finds_every_route():
    found = {path for _, path in PROTECTED}
    spec = APP.openapi()["paths"]
    assert found | PUBLIC >= set(spec), "a route in the spec was not enumerated"
    # The relay is left out of the spec: only the app's own routes show it.
    assert {"/v1/rag/{path:path}", "/v1/agents", "/v1/agents/{path:path}"} <= found
    assert len(ADMIN) >= 6 and len(PROTECTED) >= 15, PROTECTED


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
@pytest.mark.parametrize("credential", list(NOT_KEYS))
def test_refused_without_a_valid_key(gateway, method, path, credential):
    assert_refused(send(gateway, method, path, NOT_KEYS[credential]), 401)


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
@pytest.mark.parametrize("which", DEAD_KEYS)
def test_refused_with_a_revoked_or_expired_key(gateway, method, path, which):
    key = getattr(gateway, which)
    response = send(gateway, method, path, {"Authorization": f"Bearer {key}"})
    assert_refused(response, 401, secret=key)
    if (method, path) not in ADMIN:
        assert which in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), sorted(ADMIN), ids=[f"{m} {p}" for m, p in sorted(ADMIN)])
@pytest.mark.parametrize("header", ["Authorization", "x-api-key"])
def test_admin_routes_refuse_a_valid_user_key(gateway, method, path, header):
    value = f"Bearer {gateway.user}" if header == "Authorization" else gateway.user
    assert_refused(send(gateway, method, path, {header: value}), 403, secret=gateway.user)


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_the_right_key_gets_through(gateway, method, path):
    key = gateway.admin_key if (method, path) in ADMIN else gateway.user
    response = send(gateway, method, path, {"Authorization": f"Bearer {key}"})
    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text


def test_no_key_reaches_the_log(gateway):
    logs = gateway.log_path.read_text()
    used = [gateway.user, gateway.revoked, gateway.expired, gateway.admin_key, *WRONG_KEYS]
    assert not [key[:12] + "…" for key in used if key in logs]
