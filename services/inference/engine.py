"""An inference engine: one vLLM OpenAI server process serving one model version.

``VllmEngine`` builds vLLM's command line from settings (CPU or GPU), starts it from
its own environment, waits for ``/health`` and stops it. The service holds engines
through the small ``Engine`` protocol, so a test or another runtime can stand in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil

from lathe.errors import EngineUnavailableError, MissingDependencyError
from services.inference.settings import InferenceServiceSettings


@dataclass
class EngineHandle:
    """What the proxy needs of a running engine, plus its in-flight request count."""

    version: str
    base_url: str
    pid: int | None
    started_at: float = field(default_factory=time.time)
    inflight: int = 0


class Engine(Protocol):
    handle: EngineHandle

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def exited(self) -> bool: ...

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal)."""


def vllm_argv(settings: InferenceServiceSettings, model_dir: Path, port: int) -> list[str]:
    """vLLM's OpenAI server command line (``vllm serve`` trips on package metadata)."""
    argv = [
        str(settings.engine_python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", settings.model_name,
        "--host", settings.engine_host,
        "--port", str(port),
        "--dtype", settings.dtype,
        "--max-model-len", str(settings.max_model_len),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if settings.enforce_eager:
        argv.append("--enforce-eager")
    if settings.device == "cuda":
        argv += [
            "--gpu-memory-utilization", str(settings.gpu_memory_utilization),
            "--tensor-parallel-size", str(settings.tensor_parallel_size),
        ]  # fmt: skip
    argv += shlex.split(settings.extra_engine_args)
    return argv


def vllm_env(settings: InferenceServiceSettings) -> dict[str, str]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_CACHE_ROOT": str(settings.home / "cache" / "vllm"),
    }
    if settings.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kv_cache_gb)
    return env


class VllmEngine:
    def __init__(self, settings: InferenceServiceSettings, model_dir: Path, version: str, port: int) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.port = port
        self.log_file = settings.engine_log_dir / f"vllm-{settings.model_name}-v{version}-{port}.log"
        self.process: subprocess.Popen | None = None
        self.children: list[psutil.Process] = []  # vLLM's engine-core processes, seen once it is up
        self.handle = EngineHandle(version=version, base_url=f"http://{settings.engine_host}:{port}", pid=None)

    async def start(self) -> None:
        if not self.settings.engine_python.exists():
            raise MissingDependencyError(
                f"vLLM environment not found at {self.settings.engine_python}", hint="run `make install`"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = vllm_argv(self.settings, self.model_dir, self.port)
        with open(self.log_file, "ab") as log:
            # Same process group as the service: stopping the service stops its engines.
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **vllm_env(self.settings)},
            )
        self.handle.pid = self.process.pid
        await self._wait_healthy()
        with contextlib.suppress(psutil.Error):
            self.children = psutil.Process(self.process.pid).children(recursive=True)

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.engine_start_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.exited():
                    raise EngineUnavailableError(
                        f"vLLM for version {self.handle.version} exited with code {self.process.returncode}",
                        hint=f"see {self.log_file}",
                    )
                try:
                    if (await client.get(self.handle.base_url + "/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1.0)
        await self.stop()
        raise EngineUnavailableError(
            f"vLLM for version {self.handle.version} was not healthy after {self.settings.engine_start_timeout_s:.0f}s",
            hint=f"see {self.log_file}",
        )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            for _ in range(150):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        # A server killed outright leaves its engine-core processes behind (GBs each).
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                if child.is_running():  # the same process, not a reused pid
                    child.kill()
