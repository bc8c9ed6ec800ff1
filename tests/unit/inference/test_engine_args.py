import json
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


def test_one_cpu_worker_runs_inside_the_engine_process(monkeypatch):
    s = InferenceServiceSettings()
    assert s.engine_executor == "uni"
    argv = vllm_argv(s, Path("/m"), 8200)
    assert argv[argv.index("--distributed-executor-backend") + 1] == "uni"
    # vLLM's CPU platform turns "uni" back into "mp" unless this switch is off.
    assert vllm_env(s)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    # Every core but one, as vLLM's own binding leaves one: two engines never oversubscribe.
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    assert vllm_env(s)["OMP_NUM_THREADS"] == "3"
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0})
    assert vllm_env(s)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("LATHE_INFERENCE_CPU_THREADS", "2")
    assert vllm_env(InferenceServiceSettings())["OMP_NUM_THREADS"] == "2"


@pytest.mark.parametrize(
    ("env", "executor"),
    [({"LATHE_INFERENCE_ENGINE_EXECUTOR": "mp"}, "mp"),
     ({"LATHE_INFERENCE_TENSOR_PARALLEL_SIZE": "2"}, "mp"),
     ({"LATHE_INFERENCE_DEVICE": "cuda"}, "mp")],
)  # fmt: skip
def test_the_worker_gets_a_process_of_its_own_when_asked_or_sharded(monkeypatch, env, executor):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = InferenceServiceSettings()
    assert s.engine_executor == executor
    assert "--distributed-executor-backend" not in vllm_argv(s, Path("/m"), 8200)
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in vllm_env(s) and "OMP_NUM_THREADS" not in vllm_env(s)


def test_one_worker_cannot_hold_several_shards(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("LATHE_INFERENCE_ENGINE_EXECUTOR", "uni")
    monkeypatch.setenv("LATHE_INFERENCE_TENSOR_PARALLEL_SIZE", "2")
    with pytest.raises(ValidationError, match="engine_executor: uni runs one worker"):
        InferenceServiceSettings()


def test_bad_engine_setting_is_refused(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("LATHE_INFERENCE_GPU_MEMORY_UTILIZATION", "1.5")
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        InferenceServiceSettings()


def test_an_explicit_dtype_wins(monkeypatch):
    monkeypatch.setenv("LATHE_INFERENCE_DTYPE", "bfloat16")
    assert InferenceServiceSettings().dtype == "bfloat16"


def test_serving_knobs_default_to_what_suits_most_models(monkeypatch):
    argv = vllm_argv(InferenceServiceSettings(), Path("/m"), 8200)
    assert "--enable-prefix-caching" in argv and "--enable-chunked-prefill" in argv
    assert argv[argv.index("--kv-cache-dtype") + 1] == "auto"
    assert "--max-num-batched-tokens" not in argv and "--speculative-config" not in argv


def test_serving_knobs_reach_the_command_line(monkeypatch):
    for name, value in {"PREFIX_CACHING": "false", "CHUNKED_PREFILL": "false", "MAX_NUM_BATCHED_TOKENS": "4096",
                        "KV_CACHE_DTYPE": "fp8_e5m2", "MAX_NUM_SEQS": "64"}.items():  # fmt: skip
        monkeypatch.setenv(f"LATHE_INFERENCE_{name}", value)
    argv = vllm_argv(InferenceServiceSettings(), Path("/m"), 8200)
    assert "--no-enable-prefix-caching" in argv and "--no-enable-chunked-prefill" in argv
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "4096"
    assert argv[argv.index("--kv-cache-dtype") + 1] == "fp8_e5m2"
    assert argv[argv.index("--max-num-seqs") + 1] == "64"


def test_ngram_speculation_becomes_vllms_speculative_config(monkeypatch):
    monkeypatch.setenv("LATHE_INFERENCE_SPECULATIVE_METHOD", "ngram")
    monkeypatch.setenv("LATHE_INFERENCE_SPECULATIVE_TOKENS", "5")
    monkeypatch.setenv("LATHE_INFERENCE_SPECULATIVE_NGRAM_MAX", "3")
    argv = vllm_argv(InferenceServiceSettings(), Path("/m"), 8200)
    config = json.loads(argv[argv.index("--speculative-config") + 1])
    assert config == {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 3, "prompt_lookup_min": 1}


def test_a_draft_model_is_passed_by_its_folder(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("LATHE_INFERENCE_SPECULATIVE_METHOD", "draft")
    monkeypatch.setenv("LATHE_INFERENCE_SPECULATIVE_DRAFT_MODEL", str(tmp_path))
    argv = vllm_argv(InferenceServiceSettings(), Path("/m"), 8200)
    config = json.loads(argv[argv.index("--speculative-config") + 1])
    assert config == {"method": "draft_model", "model": str(tmp_path), "num_speculative_tokens": 3}


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"KV_CACHE_DTYPE": "float16"}, "LATHE_INFERENCE_KV_CACHE_DTYPE: vLLM on CPUs stores the KV cache as auto"),
        ({"KV_CACHE_DTYPE": "int3"}, "LATHE_INFERENCE_KV_CACHE_DTYPE: Input should be"),
        ({"MAX_NUM_BATCHED_TOKENS": "16"}, "LATHE_INFERENCE_MAX_NUM_BATCHED_TOKENS: 16 is below max_num_seqs (32)"),
        ({"MAX_NUM_BATCHED_TOKENS": "1024", "CHUNKED_PREFILL": "false"},
         "LATHE_INFERENCE_MAX_NUM_BATCHED_TOKENS: 1024 is below max_model_len (2048); without chunked prefill"),
        ({"SPECULATIVE_METHOD": "draft"}, "LATHE_INFERENCE_SPECULATIVE_DRAFT_MODEL: a folder is needed"),
        ({"SPECULATIVE_METHOD": "draft", "SPECULATIVE_DRAFT_MODEL": "/nowhere"},
         "LATHE_INFERENCE_SPECULATIVE_DRAFT_MODEL: no model at /nowhere"),
        ({"SPECULATIVE_METHOD": "ngram", "SPECULATIVE_NGRAM_MIN": "5"},
         "LATHE_INFERENCE_SPECULATIVE_NGRAM_MIN: 5 is above speculative_ngram_max (4)"),
        ({"SPECULATIVE_METHOD": "eagle"}, "LATHE_INFERENCE_SPECULATIVE_METHOD: Input should be 'off', 'ngram'"),
    ],
)  # fmt: skip
def test_a_bad_serving_knob_is_one_line_naming_it(monkeypatch, env, line):
    from pydantic import ValidationError

    from lathe.settings import describe_validation_error

    for name, value in env.items():
        monkeypatch.setenv(f"LATHE_INFERENCE_{name}", value)
    with pytest.raises(ValidationError) as info:
        InferenceServiceSettings()
    described = describe_validation_error(info.value, "LATHE_INFERENCE_")
    assert described.startswith(line) and "\n" not in described, described


def test_gpus_take_any_kv_cache_dtype_vllm_knows(monkeypatch):
    monkeypatch.setenv("LATHE_INFERENCE_DEVICE", "cuda")
    monkeypatch.setenv("LATHE_INFERENCE_KV_CACHE_DTYPE", "float16")
    assert InferenceServiceSettings().kv_cache_dtype == "float16"


def test_a_draft_model_with_another_tokenizer_is_refused_before_vllm_starts(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lathe.errors import ConfigError
    from services.inference.engine import check_draft_tokenizer

    def save(folder: Path, words: list[str]) -> Path:
        raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>").save_pretrained(folder)
        return folder

    served = save(tmp_path / "served", ["<unk>", "a", "b", "c"])
    check_draft_tokenizer(served, save(tmp_path / "same", ["<unk>", "a", "b", "c"]))  # the same vocabulary passes
    other = save(tmp_path / "other", ["<unk>", "b", "a"])
    with pytest.raises(ConfigError, match=r"speculative_draft_model: .* has another tokenizer .*\(3 tokens against 4"):
        check_draft_tokenizer(served, other)
