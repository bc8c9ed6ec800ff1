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
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lathe.errors import EngineUnavailableError
from lathe.supervisor import HealthWait, StartErrors, spawn
from pipelines.evaluate.chat import Endpoint

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_version(name: str, version: str, *, home: Path, tracking_uri: str, timeout_s: float = 600.0) -> Iterator[str]:
    port, engine_port = free_port(), free_port()
    log_path = home / "logs" / f"eval-inference-{name}-v{version}.log"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_INFERENCE_")}
    env = {
        "LATHE_HOME": str(home),
        "LATHE_MLFLOW_TRACKING_URI": tracking_uri,
        "LATHE_INFERENCE_PORT": str(port),
        "LATHE_INFERENCE_ENGINE_PORT_BASE": str(engine_port),
        "LATHE_INFERENCE_MODEL_NAME": name,
        "LATHE_INFERENCE_VERSION": str(version),
    }
    subject = f"the inference service for {name}/{version}"
    argv = [sys.executable, "-m", "services.inference"]
    process = spawn(subject, argv, log_file=log_path, env=env, base_env=base_env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    errors = StartErrors(
        subject,
        EngineUnavailableError,
        exited="{subject} exited with {code}",
        timed_out="{subject} was not ready after {timeout_s:.0f}s",
    )
    try:
        print(f"starting an inference service for {name} version {version} (vLLM, ~1 min on CPUs)", flush=True)
        HealthWait(url + "/health", timeout_s, process, interval_s=1.0, errors=errors).wait()
        yield url + "/v1"
    finally:
        process.stop(timeout_s=60.0)


def open_endpoint(
    stack: contextlib.ExitStack,
    section: Any,
    name: str,
    version: str | None,
    *,
    home: Path,
    tracking_uri: str,
    gateway_url: str,
    key_file: Path,
    field: str,
) -> Endpoint:
    """Where an evaluation asks: a server of exactly ``version`` (``serve: true``, stopped
    with ``stack``), the section's ``base_url``, or else the gateway with the CLI's key."""
    model = section.model or name
    key = os.environ.get(section.api_key_env) or None
    if section.serve and version is not None:
        base_url = stack.enter_context(serve_version(name, version, home=home, tracking_uri=tracking_uri))
        return Endpoint(base_url, model, key, field)
    if section.base_url:
        return Endpoint(section.base_url, model, key, field)
    if key is None and key_file.exists():
        key = key_file.read_text().strip()  # the CLI's own gateway key, written by `lathe up`
    return Endpoint(gateway_url.rstrip("/") + "/v1", model, key, field)
