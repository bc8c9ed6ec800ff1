"""Find the background processes of the local platform, and the ports they need.

Each process ``lathe up`` starts (with ``lathe.supervisor``) gets a log file and a state
file (``<home>/run/<name>.json``: pid, port, url, log, command), so a later command can
report it and ``lathe.supervisor.stop_pid`` can stop it. A process runs in a session of
its own, so stopping it ends every child it started (vLLM engines, MLflow's workers) and
nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lathe.errors import PortInUseError
from lathe.supervisor import pid_alive


@dataclass
class ProcessState:
    name: str
    pid: int
    port: int | None
    url: str | None
    log: str
    argv: list[str]
    started_at: float = field(default_factory=time.time)

    def is_running(self) -> bool:
        return pid_alive(self.pid)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, component: str, env_var: str) -> None:
    if not port_is_free(port):
        raise PortInUseError(
            f"port {port} needed by {component} is in use by another program",
            hint=f"free it or set {env_var} to another port",
        )


class StateStore:
    """State files under ``run_dir``: one JSON document per component."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def load(self, name: str) -> ProcessState | None:
        try:
            data = json.loads(self.path(name).read_text())
            return ProcessState(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, state: ProcessState) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(state.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.path(state.name))
        (self.run_dir / f"{state.name}.pid").write_text(f"{state.pid}\n")

    def remove(self, name: str) -> None:
        for suffix in (".json", ".pid"):
            (self.run_dir / f"{name}{suffix}").unlink(missing_ok=True)
