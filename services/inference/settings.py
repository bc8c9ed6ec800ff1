"""Settings of the inference service (``LATHE_INFERENCE_*``).

The address and the model to serve come from the core tree
(``lathe.settings.InferenceSettings``); the engine knobs are added here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lathe.settings import InferenceSettings, MlflowSettings, ProcessSettings

# What vLLM's CPU attention backend can store its KV cache as (vllm/v1/attention/backends/cpu_attn.py).
CPU_KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
ADAPTER_ENTRY = re.compile(r"^[A-Za-z0-9][\w.\-]*(@[A-Za-z][\w\-]*)?$")
KvCacheDtype = Literal["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"]
# The adapter ranks vLLM sizes its LoRA buffers for (vllm/config/lora.py, MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class InferenceServiceSettings(ProcessSettings, InferenceSettings):
    model_config = SettingsConfigDict(env_prefix="LATHE_INFERENCE_")

    engine_host: str = "127.0.0.1"
    # Engines take ports from here upwards; two run at once during a swap.
    engine_port_base: int = Field(default=8200, ge=1024, le=65000)
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: str = "auto"
    # Eager mode starts in ~35 s instead of ~3 min on CPU at the same speed.
    enforce_eager: bool | None = None
    max_model_len: int = Field(default=2048, ge=128)
    max_num_seqs: int = Field(default=32, ge=1)
    # CPU: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE). GPU: share of memory vLLM may take.
    cpu_kv_cache_gb: int = Field(default=1, ge=1, le=512)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    # Where vLLM's model worker runs: "uni" inside the engine process, "mp" in a process of its
    # own (vLLM's CPU default). "auto": uni on CPUs with one worker, where mp's busy-polling
    # queue takes a core from the model (README "Serving knobs" has the measurement).
    engine_executor: Literal["auto", "uni", "mp"] = "auto"
    # Threads the uni worker computes with on CPUs (OMP_NUM_THREADS). None: every core but one,
    # as vLLM's own binding under mp leaves one to the servers. More threads than cores stall
    # every engine on the machine (two engines at once during a rollout or a swap).
    cpu_threads: int | None = Field(default=None, ge=1, le=1024)
    # The scheduler and the KV cache (vLLM's own flags; README "Serving knobs" says when to turn each).
    prefix_caching: bool = True
    chunked_prefill: bool = True
    max_num_batched_tokens: int | None = Field(default=None, ge=1)  # None: vLLM sizes it for the device
    kv_cache_dtype: KvCacheDtype = "auto"
    # Speculative decoding: "ngram" proposes tokens by looking the last ones up in the prompt;
    # "draft" runs a small model (same tokenizer) ahead of the served one. Greedy answers do not change.
    speculative_method: Literal["off", "ngram", "draft"] = "off"
    speculative_tokens: int = Field(default=3, ge=1, le=16)
    speculative_ngram_max: int = Field(default=4, ge=1, le=32)
    speculative_ngram_min: int = Field(default=1, ge=1, le=32)
    speculative_draft_model: Path | None = None
    # LoRA adapters served beside the model, each a registered adapter ("NAME", or "NAME@ALIAS";
    # the alias defaults to the model's) whose alias is followed like the model's. JSON list.
    adapters: list[str] = Field(default_factory=list)
    # Adapters in one batch: requests for more wait in vLLM's queue (lathe_inference_adapter_queued_total).
    max_loras: int = Field(default=4, ge=1, le=64)
    max_lora_rank: int = 16  # one of LORA_RANKS
    # Adapters kept loaded at once (default max_loras): the least recently used is unloaded,
    # logged and counted, and loaded again by its next request.
    max_cpu_loras: int | None = Field(default=None, ge=1, le=256)
    extra_engine_args: str = ""

    engine_start_timeout_s: float = Field(default=600.0, gt=0)
    # How often the alias is checked; MLflow has no push, and a few seconds is cheap.
    poll_interval_s: float = Field(default=5.0, gt=0)
    registry_backoff_max_s: float = Field(default=60.0, gt=0)
    # How often the engine process is checked; one that exited is restarted from its folder.
    engine_check_interval_s: float = Field(default=1.0, gt=0)
    drain_timeout_s: float = Field(default=120.0, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)

    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)

    @model_validator(mode="after")
    def _engine_defaults(self) -> InferenceServiceSettings:
        if self.enforce_eager is None:
            self.enforce_eager = self.device == "cpu"
        if self.dtype == "auto" and self.device == "cpu":
            # fp32 on CPUs: vLLM's bf16 CPU path (AVX512-BF16/AMX) changes small models'
            # greedy answers for the worse (SmolLM2-135M no longer names Paris as France's
            # capital), and elsewhere bf16 is emulated and slower. LATHE_INFERENCE_DTYPE=bfloat16
            # opts in.
            self.dtype = "float32"
        if self.engine_executor == "auto":
            self.engine_executor = "uni" if self.device == "cpu" and self.tensor_parallel_size == 1 else "mp"
        if self.engine_executor == "uni" and self.tensor_parallel_size > 1:
            raise ValueError(
                f"engine_executor: uni runs one worker, and tensor_parallel_size {self.tensor_parallel_size} "
                "needs one per shard (mp)"
            )
        self._check_scheduler()
        self._check_speculation()
        self._check_adapters()
        return self

    def _check_adapters(self) -> None:
        names = [entry.partition("@")[0] for entry in self.adapters]
        for entry, name in zip(self.adapters, names, strict=True):
            alias = entry.partition("@")[2]
            if not ADAPTER_ENTRY.match(entry):
                raise ValueError(f"adapters: {entry!r} is not NAME or NAME@ALIAS")
            if name == self.model_name:
                raise ValueError(f"adapters: {name!r} is the served model's own name")
            if "@" in entry and not alias:
                raise ValueError(f"adapters: {entry!r} has an empty alias")
        if len(set(names)) != len(names):
            raise ValueError(f"adapters: a name is listed twice ({', '.join(names)})")
        if self.max_lora_rank not in LORA_RANKS:
            raise ValueError(
                f"max_lora_rank: vLLM serves ranks {', '.join(map(str, LORA_RANKS))}, not {self.max_lora_rank}"
            )
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ValueError(f"max_cpu_loras: {self.max_cpu_loras} is below max_loras ({self.max_loras})")

    @property
    def adapter_aliases(self) -> dict[str, str]:
        """Each adapter's name and the alias it is served from."""
        return {name: alias or self.alias for name, _, alias in (e.partition("@") for e in self.adapters)}

    @property
    def worker_threads(self) -> int:
        """The uni worker's thread count on CPUs: ``cpu_threads``, else every core but one."""
        return self.cpu_threads or max(1, len(os.sched_getaffinity(0)) - 1)

    @property
    def resident_adapters(self) -> int:
        return self.max_cpu_loras or self.max_loras

    def _check_scheduler(self) -> None:
        if self.device == "cpu" and self.kv_cache_dtype not in CPU_KV_CACHE_DTYPES:
            raise ValueError(
                f"kv_cache_dtype: vLLM on CPUs stores the KV cache as {', '.join(CPU_KV_CACHE_DTYPES)}, "
                f"not {self.kv_cache_dtype}"
            )
        tokens = self.max_num_batched_tokens
        if tokens is not None and tokens < self.max_num_seqs:
            raise ValueError(f"max_num_batched_tokens: {tokens} is below max_num_seqs ({self.max_num_seqs})")
        if tokens is not None and not self.chunked_prefill and tokens < self.max_model_len:
            raise ValueError(
                f"max_num_batched_tokens: {tokens} is below max_model_len ({self.max_model_len}); "
                "without chunked prefill a whole prompt must fit in one step"
            )

    def _check_speculation(self) -> None:
        if self.speculative_ngram_min > self.speculative_ngram_max:
            raise ValueError(
                f"speculative_ngram_min: {self.speculative_ngram_min} is above "
                f"speculative_ngram_max ({self.speculative_ngram_max})"
            )
        if self.speculative_method == "draft" and self.speculative_draft_model is None:
            raise ValueError("speculative_draft_model: a folder is needed when speculative_method is draft")
        if self.speculative_method == "draft" and not (self.speculative_draft_model / "config.json").is_file():
            raise ValueError(f"speculative_draft_model: no model at {self.speculative_draft_model} (no config.json)")

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"

    @property
    def engine_log_dir(self) -> Path:
        return self.home / "logs"
