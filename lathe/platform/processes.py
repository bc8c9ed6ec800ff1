"""Start, find and stop the background processes of the local platform.

Each process gets a log file and a state file (``<home>/run/<name>.json``: pid, port,
url, log, command). A process runs in a session of its own, so ``stop`` ends it and
every child it started (vLLM engines, MLflow's workers) and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

from lathe.errors import PlatformError, PortInUseError


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


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


def spawn(
    name: str,
    argv: list[str],
    *,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {name} starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise PlatformError(f"cannot start {name}: {exc.filename} not found", hint="run `make install`") from None


def wait_healthy(
    url: str,
    *,
    timeout_s: float,
    process: subprocess.Popen | None = None,
    log_file: Path | None = None,
    on_wait: Callable[[float, str], None] | None = None,
    headers: dict[str, str] | None = None,
    give_up_codes: frozenset[str] = frozenset(),
    give_up_after_s: float = 10.0,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits.

    A health answer whose JSON ``code`` is in ``give_up_codes`` names a condition that
    waiting does not cure (another process holds a folder): once it has lasted
    ``give_up_after_s`` the wait fails with that answer's detail, not at ``timeout_s``.
    """
    start = time.monotonic()
    detail = "waiting"
    stuck_since: float | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise PlatformError(
                f"{url} never became healthy: the process exited with code {process.returncode}",
                hint=f"see {log_file}" if log_file else None,
            )
        try:
            response = httpx.get(url, timeout=2.0, headers=headers)
            if response.status_code == 200:
                return
            body = _health_body(response)
            detail = _health_detail(body, response.status_code)
            if body.get("code") in give_up_codes:
                stuck_since = stuck_since if stuck_since is not None else time.monotonic()
                if time.monotonic() - stuck_since >= give_up_after_s:
                    raise PlatformError(f"{url} is not healthy: {detail}", hint=f"see {log_file}" if log_file else None)
            else:
                stuck_since = None
        except httpx.HTTPError:
            detail = "not answering yet"
        elapsed = time.monotonic() - start
        if on_wait:
            on_wait(elapsed, detail)
        if elapsed > timeout_s:
            raise PlatformError(
                f"{url} was not healthy after {timeout_s:.0f}s ({detail})",
                hint=f"see {log_file}" if log_file else None,
            )
        time.sleep(0.5)


def _health_body(response: httpx.Response) -> dict:
    """A health answer's JSON object; {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _health_detail(body: dict, status: int) -> str:
    return str(body["detail"]) if body.get("detail") else f"HTTP {status}"


def stop_pid(pid: int, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left. True if it ran."""
    if not pid_alive(pid):
        return False
    try:
        members = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        members = []
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return True
