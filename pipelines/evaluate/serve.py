"""A short-lived inference service for exactly one registered version.

The gate needs a candidate's task score through the OpenAI API before the candidate
serves anyone. ``serve_version`` starts Lathe's inference service (real vLLM, the same
process the platform runs) pinned to that version on free loopback ports, yields its
``/v1`` URL, and stops it. It talks to the service over HTTP only, like any client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from lathe.errors import EngineUnavailableError

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_version(name: str, version: str, *, home: Path, tracking_uri: str, timeout_s: float = 600.0) -> Iterator[str]:
    port, engine_port = free_port(), free_port()
    log_path = home / "logs" / f"eval-inference-{name}-v{version}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_INFERENCE_")}
    env.update(
        {
            "LATHE_HOME": str(home),
            "LATHE_MLFLOW_TRACKING_URI": tracking_uri,
            "LATHE_INFERENCE_PORT": str(port),
            "LATHE_INFERENCE_ENGINE_PORT_BASE": str(engine_port),
            "LATHE_INFERENCE_MODEL_NAME": name,
            "LATHE_INFERENCE_VERSION": str(version),
        }
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.inference"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        print(f"starting an inference service for {name} version {version} (vLLM, ~1 min on CPUs)", flush=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise EngineUnavailableError(
                    f"the inference service for {name}/{version} exited with {process.returncode}",
                    hint=f"see {log_path}",
                )
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise EngineUnavailableError(
                    f"the inference service for {name}/{version} was not ready after {timeout_s:.0f}s",
                    hint=f"see {log_path}",
                )
            time.sleep(1.0)
        yield url + "/v1"
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
