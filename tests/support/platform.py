"""A real local platform for a test suite: its own ports and home, started with the CLI.

    platform = Platform(tmp_home, {"LATHE_GATEWAY_PORT": "21050", ...}, LATHE_PROMETHEUS_ENABLED="false")
    platform.up()            # `lathe up --json`; fails the test with the CLI's output
    platform.lathe("keys", "create", "k", "--json")
    platform.down()          # `lathe down`; fails if any process it started outlived it

Each suite that starts one (tests/load) passes ports of its own, away from the defaults
(a developer's platform may be up), from every other suite's, and from Ray's worker
port range (10002-19999). The bundled model comes from the repository's
``.lathe/assets`` (``make install`` prepares it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]


def platform_env(home: Path, ports: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a platform on ``ports`` under ``home``; no LATHE_* leaks in from the shell,
    nor an MLflow URI that an earlier test's ``mlflow.set_tracking_uri`` left in the environment."""
    leaks = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_") and k not in leaks}
    env.update(ports)
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


def run_lathe(args: list[str], env: Mapping[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=dict(env), timeout=timeout
    )


class Platform:
    def __init__(self, home: Path, ports: Mapping[str, str], **extra_env: str) -> None:
        self.home = home
        self.ports = dict(ports)
        self.env = platform_env(home, ports, **extra_env)

    def lathe(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run_lathe(list(args), self.env, timeout)

    def up(self) -> dict:
        result = self.lathe("up", "--json")
        assert result.returncode == 0, f"lathe up failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout)

    def down(self) -> None:
        pids = self.process_tree()
        result = self.lathe("down")
        assert result.returncode == 0, result.stderr
        survivors = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert not survivors, f"lathe down left processes running: {survivors}"

    def status(self) -> dict:
        return json.loads(self.lathe("status", "--json").stdout)

    def component(self, name: str) -> dict:
        return next(c for c in self.status()["components"] if c["name"] == name)

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_variable]}"

    @property
    def gateway_url(self) -> str:
        return self.url("LATHE_GATEWAY_PORT")

    def create_key(self, name: str, *options: str) -> str:
        """A gateway API key made with ``lathe keys create NAME [options] --json``."""
        result = self.lathe("keys", "create", name, *options, "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["key"]

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
