"""The process supervisor, against real child processes on loopback.

Every wait here is a ``HealthWait`` with a deadline: the tests synchronise on what the
child says (its health answer, a line in its log, a child process it started).
"""

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import psutil
import pytest

from lathe.errors import EngineUnavailableError, PlatformError
from lathe.supervisor import Health, HealthWait, StartErrors, pid_alive, spawn, stop_pid

HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

print("listening", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""
DIES_AT_ONCE = "import sys; print('boom: no model at /models/m', flush=True); sys.exit(3)"
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"
)
HAS_A_CHILD = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _has_children(process) -> bool:
    return pid_alive(process.pid) and bool(psutil.Process(process.pid).children(recursive=True))


@pytest.fixture
def served(tmp_path):
    """A real HTTP server child with a /health route, stopped afterwards whatever happened."""
    port = _free_port()
    process = spawn("health-server", [sys.executable, "-c", HEALTH_SERVER, str(port)], log_file=tmp_path / "s.log")
    yield process, f"http://127.0.0.1:{port}/health"
    process.stop(timeout_s=5)


def test_a_healthy_start_is_seen_running_and_stops_on_sigterm(served, tmp_path):
    process, url = served
    seen: list[str] = []
    HealthWait(url, timeout_s=30, process=process, on_wait=lambda _, detail: seen.append(detail)).wait()
    assert process.running() and process.returncode is None
    assert set(seen) <= {"not answering yet"}
    assert process.stop(timeout_s=10)
    assert not process.running() and process.returncode == -signal.SIGTERM
    assert not process.stop(), "a second stop finds nothing to stop"
    log = (tmp_path / "s.log").read_text()
    assert "health-server starting" in log and "listening" in log


def test_a_process_that_dies_while_starting_fails_the_wait_at_once_quoting_its_log(tmp_path):
    log = tmp_path / "dies.log"
    log.write_text("an earlier run's last words\n")
    process = spawn("dies", [sys.executable, "-c", DIES_AT_ONCE], log_file=log)
    started = time.monotonic()
    with pytest.raises(PlatformError, match="exited with code 3") as caught:
        HealthWait(f"http://127.0.0.1:{_free_port()}/health", timeout_s=60, process=process).wait()
    assert time.monotonic() - started < 30
    hint = caught.value.hint
    assert str(log) in hint and "boom: no model at /models/m" in hint
    assert "earlier run" not in hint  # only this run's lines
    assert "\n" not in caught.value.one_line()


def test_the_caller_chooses_the_error_class_and_wording(tmp_path):
    process = spawn("dies", [sys.executable, "-c", DIES_AT_ONCE], log_file=tmp_path / "dies.log")
    errors = StartErrors("vLLM for version 3", EngineUnavailableError, exited="{subject} stopped ({code})")
    with pytest.raises(EngineUnavailableError, match=r"^vLLM for version 3 stopped \(3\)"):
        HealthWait(lambda: False, timeout_s=60, process=process, interval_s=0.05, errors=errors).wait()


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    log = tmp_path / "stubborn.log"
    process = spawn("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], log_file=log)
    HealthWait(lambda: "ready" in log.read_text(), timeout_s=30, process=process, interval_s=0.05).wait()
    started = time.monotonic()
    assert process.stop(timeout_s=1.0)
    took = time.monotonic() - started
    assert 1.0 <= took < 15
    assert process.returncode == -signal.SIGKILL


def test_stop_pid_ends_a_process_and_its_children(tmp_path):
    process = spawn("tree", [sys.executable, "-c", HAS_A_CHILD], log_file=tmp_path / "tree.log")
    HealthWait(lambda: _has_children(process), timeout_s=30, process=process, interval_s=0.05).wait()
    children = psutil.Process(process.pid).children(recursive=True)
    assert stop_pid(process.pid, timeout_s=5)
    process.process.wait(timeout=5)
    assert not any(pid_alive(c.pid) for c in children)
    assert not stop_pid(process.pid)


def test_children_seen_once_healthy_are_stopped_after_their_leader_was_killed(tmp_path):
    # vLLM's case: the server is killed outright; its engine-core processes must not run on.
    process = spawn("leader", [sys.executable, "-c", HAS_A_CHILD], log_file=tmp_path / "leader.log", own_group=False)
    HealthWait(lambda: _has_children(process), timeout_s=30, process=process, interval_s=0.05).wait()
    orphans = list(process.family)
    assert orphans
    os.kill(process.pid, signal.SIGKILL)
    HealthWait(lambda: not process.running(), timeout_s=30, interval_s=0.05).wait()
    assert process.returncode == -signal.SIGKILL
    assert all(pid_alive(o.pid) for o in orphans), "the kill left its child running"
    assert not process.stop()
    assert not any(pid_alive(o.pid) for o in orphans)


def test_the_async_face_starts_waits_and_stops(served):
    process, url = served

    async def scenario() -> None:
        await HealthWait(url, timeout_s=30, process=process, interval_s=0.05).wait_async()
        assert process.running()
        checked: list[int] = []

        async def check() -> Health:  # a caller's own async check
            checked.append(1)
            return Health(len(checked) >= 2, "warming up")

        await HealthWait(check, timeout_s=30, process=process, interval_s=0.01).wait_async()
        assert await process.stop_async(timeout_s=10)

    asyncio.run(scenario())
    assert process.returncode == -signal.SIGTERM


def test_the_async_face_fails_when_the_process_dies(tmp_path):
    process = spawn("dies", [sys.executable, "-c", DIES_AT_ONCE], log_file=tmp_path / "dies.log")
    wait = HealthWait(f"http://127.0.0.1:{_free_port()}/health", timeout_s=60, process=process)
    with pytest.raises(PlatformError, match="exited with code 3") as caught:
        asyncio.run(wait.wait_async())
    assert "boom" in caught.value.hint


def test_spawn_names_a_missing_program(tmp_path):
    with pytest.raises(PlatformError, match="not found"):
        spawn("ghost", ["/nonexistent/bin/ghost"], log_file=tmp_path / "ghost.log")


@pytest.fixture
def locked_health():
    """A health endpoint that answers what the RAG service does while another process holds its store."""
    body = json.dumps({"status": "unavailable", "code": "store_locked", "detail": "store_locked: held by pid 42"})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/health"
    server.shutdown()


def test_a_condition_waiting_will_not_cure_fails_after_its_grace(locked_health):
    # The answer's own detail, not "not healthy after 600s": it gave up after the grace.
    wait = HealthWait(locked_health, timeout_s=600, give_up_codes=frozenset({"store_locked"}), give_up_after_s=0.5)
    with pytest.raises(PlatformError, match=r"is not healthy: store_locked: held by pid 42"):
        wait.wait()


def test_other_codes_wait_until_the_deadline(locked_health):
    wait = HealthWait(locked_health, timeout_s=1, give_up_codes=frozenset({"model_loading"}), give_up_after_s=0)
    with pytest.raises(PlatformError, match=r"was not healthy after 1s \(store_locked: held by pid 42\)"):
        wait.wait()
