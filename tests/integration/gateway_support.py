"""Processes for the gateway tests: light OpenAI backends, Redis, and gateways."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"process for {url} exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class StubProcess:
    """A stub server from tests/support as a process of its own, logging to a file."""

    def __init__(self, module: str, port: int, log_path: Path, *args: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port), *args],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/health", proc=self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


class Stub(StubProcess):
    """tests/support/openai_stub.py: an OpenAI-compatible backend."""

    def __init__(self, port: int, name: str, log_dir: Path, *extra: str) -> None:
        self.name = name
        super().__init__("tests.support.openai_stub", port, log_dir / f"stub-{name}.log", "--name", name, *extra)


class EchoUpstream(StubProcess):
    """tests/support/echo_stub.py: stands in for the RAG and agent services."""

    def __init__(self, port: int, log_dir: Path) -> None:
        super().__init__("tests.support.echo_stub", port, log_dir / f"echo-{port}.log")


class RedisServer:
    def __init__(self, port: int, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make install-system installs it)")
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def redis_server_on(port: int):
    """A module's own redis-server on ``port``, as a fixture; skipped where none is installed."""

    @pytest.fixture(scope="module")
    def redis_server(tmp_path_factory):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (make install-system installs it)")
        server = RedisServer(port, tmp_path_factory.mktemp("redis"))
        yield server
        server.stop()

    return redis_server


class Gateway:
    def __init__(self, home: Path, port: int, metrics_port: int, routes: Path, **env: str) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.admin_key = "lk-admin-" + secrets.token_urlsafe(24)
        self.log_path = home / "gateway.log"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
        self.env.update(
            {
                "LATHE_HOME": str(home),
                "LATHE_GATEWAY_PORT": str(port),
                "LATHE_GATEWAY_METRICS_PORT": str(metrics_port),
                "LATHE_GATEWAY_ROUTES_FILE": str(routes),
                "LATHE_GATEWAY_ADMIN_KEY": self.admin_key,
                "LATHE_GATEWAY_HEALTH_INTERVAL_S": "0.5",
                "LATHE_GATEWAY_BREAKER_RESET_S": "2",
                **env,
            }
        )
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.gateway"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/health", proc=self.proc, log=self.log_path)

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def create_key(self, name: str, **limits) -> str:
        response = self.admin("POST", "/admin/keys", json={"name": name, **limits})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def lathe(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(self.env, LATHE_GATEWAY_URL=self.url)
        return subprocess.run(
            [sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
