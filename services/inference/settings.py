"""Settings of the inference service (``LATHE_INFERENCE_*``).

The address and the model to serve come from the core tree
(``lathe.settings.InferenceSettings``); the engine knobs are added here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lathe.settings import InferenceSettings, MlflowSettings, ProcessSettings


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
        return self

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"

    @property
    def engine_log_dir(self) -> Path:
        return self.home / "logs"
