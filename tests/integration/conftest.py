"""A real local platform for the integration tests, on its own ports and home.

It is started once per session through the real CLI (`lathe up --json`) and stopped
with `lathe down`, after which every process it started must be gone. The bundled
model is taken from the repository's ``.lathe/assets`` (``make install`` prepares it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

# Away from the defaults (a developer's own platform may be up) and from Ray's worker
# port range (10002-19999).
PORTS = {
    "LATHE_MLFLOW_PORT": "25000",
    "LATHE_RAY_PORT": "26380",
    "LATHE_RAY_DASHBOARD_PORT": "28265",
    "LATHE_RAY_CLIENT_PORT": "30001",
    "LATHE_RAY_AGENT_PORT": "22365",
    "LATHE_INFERENCE_PORT": "28100",
    "LATHE_INFERENCE_ENGINE_PORT_BASE": "28200",
    "LATHE_GATEWAY_PORT": "28050",
    "LATHE_GATEWAY_METRICS_PORT": "28059",
    "LATHE_PROMETHEUS_PORT": "29090",
    "LATHE_RAG_PORT": "28300",
    "LATHE_AGENT_PORT": "28400",
}


def platform_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    env.update(PORTS)
    env.update(
        {
            "LATHE_HOME": str(home),
            "LATHE_ASSETS": str(REPO / ".lathe" / "assets"),
            "LATHE_INFERENCE_POLL_INTERVAL_S": "1",
            "LATHE_PROMETHEUS_SCRAPE_INTERVAL_S": "2",
        }
    )
    env.update(extra)
    return env


def run_lathe(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


class Platform:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = platform_env(home)

    def lathe(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run_lathe(list(args), self.env, timeout)

    def status(self) -> dict:
        result = self.lathe("status", "--json")
        return json.loads(result.stdout)

    def component(self, name: str) -> dict:
        return next(c for c in self.status()["components"] if c["name"] == name)

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{PORTS['LATHE_MLFLOW_PORT']}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{PORTS['LATHE_GATEWAY_PORT']}"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{PORTS['LATHE_INFERENCE_PORT']}"

    def process_tree(self) -> list[int]:
        pids = []
        for component in self.status()["components"]:
            if component["pid"]:
                try:
                    proc = psutil.Process(component["pid"])
                    pids += [proc.pid, *(c.pid for c in proc.children(recursive=True))]
                except psutil.Error:
                    pass
        return pids


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Platform:
    home = tmp_path_factory.mktemp("lathe-home")
    platform = Platform(home)
    result = platform.lathe("up", "--json")
    assert result.returncode == 0, f"lathe up failed:\n{result.stdout}\n{result.stderr}"
    yield platform
    pids = platform.process_tree()
    down = platform.lathe("down")
    assert down.returncode == 0, down.stderr
    survivors = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not survivors, f"lathe down left processes running: {survivors}"
