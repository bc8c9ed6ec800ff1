from pathlib import Path

import pytest

from services.inference.engine import vllm_argv, vllm_env
from services.inference.settings import InferenceServiceSettings

pytestmark = pytest.mark.usefixtures("clean_lathe_env")


def test_cpu_defaults_are_eager_with_a_kv_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    s = InferenceServiceSettings()
    argv = vllm_argv(s, Path("/models/m/1"), 8201)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enforce-eager" in argv
    assert argv[argv.index("--dtype") + 1] == "float32"
    assert argv[argv.index("--served-model-name") + 1] == s.model_name
    assert "--gpu-memory-utilization" not in argv
    env = vllm_env(s)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CACHE_ROOT"].startswith(str(tmp_path))


def test_gpu_settings_reach_the_command_line(monkeypatch):
    monkeypatch.setenv("LATHE_INFERENCE_DEVICE", "cuda")
    monkeypatch.setenv("LATHE_INFERENCE_TENSOR_PARALLEL_SIZE", "2")
    monkeypatch.setenv("LATHE_INFERENCE_GPU_MEMORY_UTILIZATION", "0.8")
    monkeypatch.setenv("LATHE_INFERENCE_EXTRA_ENGINE_ARGS", "--enable-prefix-caching --max-loras 4")
    s = InferenceServiceSettings()
    argv = vllm_argv(s, Path("/m"), 8200)
    assert "--enforce-eager" not in argv  # CUDA graphs on GPU
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.8"
    assert argv[-3:] == ["--enable-prefix-caching", "--max-loras", "4"]
    assert "VLLM_CPU_KVCACHE_SPACE" not in vllm_env(s)


def test_bad_engine_setting_is_refused(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("LATHE_INFERENCE_GPU_MEMORY_UTILIZATION", "1.5")
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        InferenceServiceSettings()


def test_an_explicit_dtype_wins(monkeypatch):
    monkeypatch.setenv("LATHE_INFERENCE_DTYPE", "bfloat16")
    assert InferenceServiceSettings().dtype == "bfloat16"
