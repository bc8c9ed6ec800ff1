"""`helm test`: the test pod renders and validates, is a hook, reads its key from a Secret, is
admitted by the gateway's policy, and the check it runs works against an HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lathe import k8s_check
from tests.unit.k8s import manifests

SECRET = {"helmTest": {"apiKey": {"existingSecret": "lathe-test-key", "key": "api-key"}}}


def _objects(values=None):
    return manifests.render(values)


def _test_pod(objs):
    pods = [o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"].endswith("helm-test")]
    assert len(pods) == 1
    return pods[0]


def test_no_secret_no_test_pod() -> None:
    names = [o["metadata"]["name"] for o in _objects() if o["kind"] == "Pod"]
    assert not [n for n in names if n.endswith("helm-test")]


def test_pod_is_a_valid_hook_reading_the_secret() -> None:
    objs = _objects(SECRET)
    pod = _test_pod(objs)
    assert not manifests.validate(pod)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LATHE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lathe-test-key", "key": "api-key"}
    assert "value" not in env["LATHE_API_KEY"]
    assert container["command"][:3] == ["python", "-m", "lathe.k8s_check"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_policies_let_the_test_pod_reach_the_gateway() -> None:
    objs = _objects(SECRET)
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    own = next(p for n, p in policies.items() if n.endswith("helm-test"))
    assert not manifests.validate(own)
    assert own["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "helm-test"
    gateway = next(p for n, p in policies.items() if n.endswith("-gateway"))
    peers = [peer for rule in gateway["spec"]["ingress"] for peer in rule.get("from", [])]
    selectors = [p.get("podSelector", {}).get("matchLabels", {}) for p in peers]
    assert {"app.kubernetes.io/instance": manifests.RELEASE, "app.kubernetes.io/component": "helm-test"} in selectors


class _Gateway(BaseHTTPRequestHandler):
    ready = 200

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer sk-test":
            self._send(401, {"error": {"message": "bad key"}})
        elif self.path == "/ready":
            self._send(type(self).ready, {"status": "ok"})
        else:
            self._send(200, {"data": [{"id": "champion"}]})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        model = json.loads(self.rfile.read(length))["model"]
        self._send(200, {"choices": [{"message": {"content": f"hello from {model}"}}]})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Gateway
    server.shutdown()
    _Gateway.ready = 200


def test_check_runs_the_three_steps(gateway) -> None:
    url, _ = gateway
    lines = k8s_check.check(url, "sk-test", timeout_s=5)
    assert lines == ["ready: ok", "models: champion", "chat (champion): 'hello from champion'"]


def test_check_fails_when_not_ready_or_key_wrong(gateway) -> None:
    url, handler = gateway
    with pytest.raises(RuntimeError, match="/ready answered 401"):
        k8s_check.check(url, "wrong", timeout_s=5)
    handler.ready = 503
    with pytest.raises(RuntimeError, match="/ready answered 503"):
        k8s_check.check(url, "sk-test", timeout_s=5)


def test_module_entry_point_exists() -> None:
    out = subprocess.run([sys.executable, "-m", "lathe.k8s_check", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--url" in out.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "lathe.k8s_check"], capture_output=True, text=True, env={"PATH": "/usr/bin"}
    )
    assert missing.returncode == 2 and "LATHE_API_KEY" in missing.stderr
