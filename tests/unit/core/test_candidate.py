"""The local candidate service: pinned to a version, on ports of its own, shown and stopped with the rest."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from lathe.errors import PlatformError
from lathe.platform.components import GatewayComponent
from lathe.platform.local import LocalPlatform
from lathe.platform.processes import ProcessState
from lathe.settings import load_settings
from lathe.supervisor import pid_alive, spawn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATHE_INFERENCE_CANDIDATE_PORT", str(_free_port()))
    monkeypatch.setenv("LATHE_MLFLOW_PORT", str(_free_port()))
    return load_settings()


def test_candidate_is_pinned_to_its_version_on_ports_of_its_own(settings):
    platform = LocalPlatform(settings)
    env = platform.candidate("7").env()
    assert env["LATHE_INFERENCE_VERSION"] == "7"
    assert env["LATHE_INFERENCE_PORT"] == str(settings.inference.candidate_port)
    assert env["LATHE_INFERENCE_ENGINE_PORT_BASE"] == "8500"
    assert env["LATHE_MLFLOW_TRACKING_URI"] == settings.mlflow.uri
    assert platform.candidate("7").log_file.name == "candidate.log"
    with pytest.raises(ValueError, match="needs a version"):
        platform.candidate().env()


def test_gateway_lists_the_candidate_as_a_second_backend(settings):
    env = GatewayComponent(settings, LocalPlatform(settings).store).env()
    assert env["LATHE_GATEWAY_CANDIDATE_BACKEND_URL"] == f"http://127.0.0.1:{settings.inference.candidate_port}"


def test_start_candidate_refuses_without_the_platform(settings):
    with pytest.raises(PlatformError, match="not running"):
        LocalPlatform(settings).start_candidate("2")


def test_a_running_candidate_is_reported_and_stopped_by_down(settings, tmp_path):
    """A stand-in that answers /health like the inference service, recorded as the candidate."""
    platform = LocalPlatform(settings)
    port = settings.inference.candidate_port
    argv = [sys.executable, "-m", "tests.support.openai_stub", "--port", str(port), "--version", "4"]
    process = spawn("candidate", argv, log_file=tmp_path / "stub.log")
    platform.store.save(ProcessState("candidate", process.pid, port, f"http://127.0.0.1:{port}", "log", argv))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and platform.candidate_version() is None:
            time.sleep(0.2)
        assert platform.candidate_version() == "4"
        names = [s.name for s in platform.status()]
        assert names[2:4] == ["inference", "candidate"]
        candidate = next(s for s in platform.status() if s.name == "candidate")
        assert candidate.healthy and candidate.pid == process.pid

        assert "candidate" in platform.down()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(process.pid):
            time.sleep(0.1)
        assert not pid_alive(process.pid)
        assert platform.store.load("candidate") is None
        assert "candidate" not in [s.name for s in platform.status()]
        assert platform.stop_candidate() is False
    finally:
        if pid_alive(process.pid):
            process.stop()
