"""``VllmEngine``'s process handling, with a stand-in for vLLM's Python that serves /health.

The stand-in gets vLLM's real command line and listens on its ``--port``; the test
checks what the service relies on: start waits for health, ``exited``/``returncode``
see a crash, ``stop`` ends it, and a start that dies says so with the log's last lines.
"""

import asyncio
import os
import signal
import socket
import sys

import pytest

from lathe.errors import EngineUnavailableError
from services.inference.engine import VllmEngine
from services.inference.settings import InferenceServiceSettings

pytestmark = pytest.mark.usefixtures("clean_lathe_env")

FAKE_VLLM = """#!{python}
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

if "{mode}" == "crash":
    print("RuntimeError: no CPU backend", flush=True)
    sys.exit(3)

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Health).serve_forever()
"""


def _engine(tmp_path, mode: str) -> VllmEngine:
    python = tmp_path / f"fake-vllm-{mode}"
    python.write_text(FAKE_VLLM.format(python=sys.executable, mode=mode))
    python.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = InferenceServiceSettings(home=tmp_path / "home", engine_python=python, engine_start_timeout_s=60)
    return VllmEngine(settings, tmp_path / "model", "7", port)


def test_an_engine_starts_healthy_is_watched_and_stops(tmp_path):
    engine = _engine(tmp_path, "serve")

    async def scenario() -> None:
        await engine.start()
        assert engine.handle.pid and not engine.exited() and engine.returncode is None
        await engine.stop()
        assert engine.exited() and engine.returncode == -signal.SIGTERM
        await engine.stop()  # twice is harmless

    asyncio.run(scenario())
    assert "vLLM for version 7 starting" in engine.log_file.read_text()


def test_an_engine_that_dies_while_starting_is_unavailable_with_its_last_words(tmp_path):
    engine = _engine(tmp_path, "crash")
    with pytest.raises(EngineUnavailableError, match=r"^vLLM for version 7 exited with code 3") as caught:
        asyncio.run(engine.start())
    assert str(engine.log_file) in caught.value.hint and "no CPU backend" in caught.value.hint
    assert engine.exited() and engine.returncode == 3


def test_an_engine_killed_outright_is_seen_exited(tmp_path):
    engine = _engine(tmp_path, "serve")

    async def scenario() -> None:
        await engine.start()
        os.kill(engine.handle.pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not engine.exited():
            assert loop.time() < deadline, "the kill was never seen"
            await asyncio.sleep(0.02)
        assert engine.returncode == -signal.SIGKILL
        await engine.stop()

    asyncio.run(scenario())
