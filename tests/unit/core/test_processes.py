import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import psutil
import pytest

from lathe.errors import PlatformError, PortInUseError
from lathe.platform.processes import (
    ProcessState,
    StateStore,
    pid_alive,
    port_is_free,
    require_free_port,
    spawn,
    stop_pid,
    wait_healthy,
)


def test_port_checks_see_a_listening_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match="LATHE_X_PORT"):
            require_free_port(port, "x", "LATHE_X_PORT")
    assert port_is_free(port)


def test_state_store_round_trip(tmp_path):
    store = StateStore(tmp_path / "run")
    state = ProcessState("mlflow", 123, 5000, "http://127.0.0.1:5000", "/tmp/log", ["mlflow", "server"])
    store.save(state)
    assert store.load("mlflow") == state
    assert (tmp_path / "run" / "mlflow.pid").read_text().strip() == "123"
    store.remove("mlflow")
    assert store.load("mlflow") is None


def test_stop_ends_the_process_and_its_children(tmp_path):
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    proc = spawn("tree", [sys.executable, "-c", script], log_file=tmp_path / "tree.log")
    for _ in range(50):
        children = psutil.Process(proc.pid).children(recursive=True)
        if children:
            break
        time.sleep(0.1)
    assert children, "the child never started"
    assert stop_pid(proc.pid, timeout_s=5)
    proc.wait(timeout=5)
    assert not any(pid_alive(c.pid) for c in children)
    assert "tree starting" in (tmp_path / "tree.log").read_text()


def test_wait_healthy_fails_fast_when_the_process_exits(tmp_path):
    proc = spawn("dies", [sys.executable, "-c", "raise SystemExit(3)"], log_file=tmp_path / "dies.log")
    started = time.monotonic()
    with pytest.raises(PlatformError, match="exited with code 3"):
        wait_healthy("http://127.0.0.1:9/health", timeout_s=60, process=proc, log_file=tmp_path / "dies.log")
    assert time.monotonic() - started < 30


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


def test_wait_healthy_gives_up_on_a_condition_waiting_will_not_cure(locked_health):
    # The answer's own detail, not "not healthy after 600s": it gave up after the grace.
    with pytest.raises(PlatformError, match=r"is not healthy: store_locked: held by pid 42"):
        wait_healthy(locked_health, timeout_s=600, give_up_codes=frozenset({"store_locked"}), give_up_after_s=0.5)


def test_wait_healthy_keeps_waiting_on_other_codes(locked_health):
    with pytest.raises(PlatformError, match=r"was not healthy after 1s \(store_locked: held by pid 42\)"):
        wait_healthy(locked_health, timeout_s=1, give_up_codes=frozenset({"model_loading"}), give_up_after_s=0)


def test_spawn_names_a_missing_program(tmp_path):
    with pytest.raises(PlatformError, match="not found"):
        spawn("ghost", ["/nonexistent/bin/ghost"], log_file=tmp_path / "ghost.log")
