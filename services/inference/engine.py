"""An inference engine: one vLLM OpenAI server process serving one model version.

``VllmEngine`` builds vLLM's command line from settings (CPU or GPU), starts it from
its own environment, waits for ``/health`` and stops it, all with ``lathe.supervisor``.
The service holds engines through the small ``Engine`` protocol, so a test or another
runtime can stand in.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lathe.errors import ConfigError, EngineUnavailableError, MissingDependencyError
from lathe.supervisor import HealthWait, StartErrors, Supervised, spawn
from services.inference.settings import InferenceServiceSettings

STOP_GRACE_S = 15.0
NOT_HEALTHY_IN_TIME = "{subject} was not healthy after {timeout_s:.0f}s"


@dataclass
class EngineHandle:
    """What the proxy needs of a running engine, plus its in-flight request count."""

    version: str
    base_url: str
    pid: int | None
    started_at: float = field(default_factory=time.time)
    inflight: int = 0
    # LoRA adapters loaded in this engine, name -> version, least recently used first.
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)


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
    if settings.engine_executor == "uni":
        argv += ["--distributed-executor-backend", "uni"]
    if settings.device == "cuda":
        argv += [
            "--gpu-memory-utilization", str(settings.gpu_memory_utilization),
            "--tensor-parallel-size", str(settings.tensor_parallel_size),
        ]  # fmt: skip
    argv += serving_knob_args(settings)
    if settings.tracing.enabled and settings.tracing.otlp_endpoint:
        # vLLM continues the traceparent the inference service sends and exports its own spans.
        argv += ["--otlp-traces-endpoint", settings.tracing.otlp_endpoint]
    argv += shlex.split(settings.extra_engine_args)
    return argv


def serving_knob_args(settings: InferenceServiceSettings) -> list[str]:
    """The scheduler, KV-cache and speculation settings as vLLM flags; the chart renders the same."""
    argv = [
        "--enable-prefix-caching" if settings.prefix_caching else "--no-enable-prefix-caching",
        "--enable-chunked-prefill" if settings.chunked_prefill else "--no-enable-chunked-prefill",
        "--kv-cache-dtype", settings.kv_cache_dtype,
    ]  # fmt: skip
    if settings.max_num_batched_tokens is not None:
        argv += ["--max-num-batched-tokens", str(settings.max_num_batched_tokens)]
    if settings.device == "cpu" and settings.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    speculative = speculative_config(settings)
    if speculative is not None:
        argv += ["--speculative-config", json.dumps(speculative, sort_keys=True, separators=(",", ":"))]
    return argv + lora_args(settings)


def lora_args(settings: InferenceServiceSettings) -> list[str]:
    """vLLM's LoRA flags when adapters are served; the service loads them at run time."""
    if not settings.adapters:
        return []
    return [
        "--enable-lora",
        "--max-loras", str(settings.max_loras),
        "--max-lora-rank", str(settings.max_lora_rank),
        "--max-cpu-loras", str(settings.resident_adapters),
    ]  # fmt: skip


def speculative_config(settings: InferenceServiceSettings) -> dict | None:
    """vLLM's ``--speculative-config`` for the settings; None when speculation is off."""
    if settings.speculative_method == "ngram":
        return {
            "method": "ngram",
            "num_speculative_tokens": settings.speculative_tokens,
            "prompt_lookup_max": settings.speculative_ngram_max,
            "prompt_lookup_min": settings.speculative_ngram_min,
        }
    if settings.speculative_method == "draft":
        return {
            "method": "draft_model",
            "model": str(settings.speculative_draft_model),
            "num_speculative_tokens": settings.speculative_tokens,
        }
    return None


def check_draft_tokenizer(model_dir: Path, draft_dir: Path) -> None:
    """A draft model proposes token ids, so it must share the served model's vocabulary:
    refused before vLLM starts, in one line, rather than serving garbage or failing deep inside it."""
    from transformers import AutoTokenizer

    served = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    draft = AutoTokenizer.from_pretrained(draft_dir).get_vocab()
    if served != draft:
        differ = sum(1 for token, i in served.items() if draft.get(token) != i)
        raise ConfigError(
            f"speculative_draft_model: {draft_dir} has another tokenizer than the served model "
            f"({len(draft)} tokens against {len(served)}, {differ} of the served model's ids differ)"
        )


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
        if settings.engine_executor == "uni":
            # vLLM's CPU platform replaces "uni" with "mp" unless its V1 multiprocessing switch is
            # off; the API server still runs the engine core in a process of its own.
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            env["OMP_NUM_THREADS"] = str(settings.worker_threads)
    if settings.adapters:
        # /v1/load_lora_adapter and /v1/unload_lora_adapter: how an adapter's alias is followed.
        # The engine listens on loopback only; the service is what clients reach.
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


class VllmEngine:
    def __init__(self, settings: InferenceServiceSettings, model_dir: Path, version: str, port: int) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.port = port
        self.log_file = settings.engine_log_dir / f"vllm-{settings.model_name}-v{version}-{port}.log"
        self.process: Supervised | None = None
        self.handle = EngineHandle(version=version, base_url=f"http://{settings.engine_host}:{port}", pid=None)

    async def start(self) -> None:
        if not self.settings.engine_python.exists():
            raise MissingDependencyError(
                f"vLLM environment not found at {self.settings.engine_python}", hint="run `make install`"
            )
        if self.settings.speculative_method == "draft" and self.settings.speculative_draft_model is not None:
            await asyncio.to_thread(check_draft_tokenizer, self.model_dir, self.settings.speculative_draft_model)
        argv = vllm_argv(self.settings, self.model_dir, self.port)
        subject = f"vLLM for version {self.handle.version}"
        # Same process group as the service: stopping the service stops its engines.
        self.process = spawn(subject, argv, log_file=self.log_file, env=vllm_env(self.settings), own_group=False)
        self.handle.pid = self.process.pid
        errors = StartErrors(subject, EngineUnavailableError, timed_out=NOT_HEALTHY_IN_TIME)
        health = self.handle.base_url + "/health"
        wait = HealthWait(health, self.settings.engine_start_timeout_s, self.process, interval_s=1.0, errors=errors)
        try:
            await wait.wait_async()  # on success the process remembers vLLM's engine-core processes
        except BaseException:
            await self.stop()
            raise

    def exited(self) -> bool:
        return self.process is not None and not self.process.running()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    async def stop(self) -> None:
        # Its engine-core processes go too, even when a kill left them behind (GBs each).
        if self.process is not None:
            await self.process.stop_async(STOP_GRACE_S)
