"""The serving knobs of a model on Kubernetes: prefix caching, chunked prefill, batch sizes,
KV-cache dtype and speculative decoding reach vLLM as the same flags the inference service
gives it outside Kubernetes, and a value vLLM would refuse is refused at render time, naming the key."""

from __future__ import annotations

import json
import re

import pytest

from services.inference.engine import serving_knob_args
from services.inference.settings import InferenceServiceSettings
from tests.unit.k8s import manifests

MODEL = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
KNOBS = ("--enable-", "--no-enable-", "--kv-cache-dtype", "--max-num-seqs", "--max-num-batched", "--speculative")


def _vllm_args(model: dict) -> list[str]:
    objects = manifests.render({"inference": {"models": [model]}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(model["id"])]
    assert manifests.validate(deployment) == []
    (vllm,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"].endswith("vllm")]
    return vllm["args"]


def _knobs(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith(KNOBS)]


def _as_service_flags(settings: InferenceServiceSettings) -> list[str]:
    """``serving_knob_args`` in the chart's ``--flag=value`` form."""
    argv, flags = serving_knob_args(settings), []
    while argv:
        flag = argv.pop(0)
        flags.append(flag if not argv or argv[0].startswith("--") else f"{flag}={argv.pop(0)}")
    return flags


def test_the_defaults_turn_prefix_caching_and_chunked_prefill_on_and_leave_batch_sizes_to_vllm():
    knobs = _knobs(_vllm_args(MODEL))
    assert knobs == ["--enable-prefix-caching", "--enable-chunked-prefill", "--kv-cache-dtype=auto"]
    assert knobs == _as_service_flags(InferenceServiceSettings(device="cuda"))


def test_a_models_entry_without_the_keys_renders_the_same_defaults():
    knob_keys = ("prefixCaching", "chunkedPrefill", "kvCacheDtype", "maxNumSeqs", "maxNumBatchedTokens", "speculative")
    bare = {k: v for k, v in MODEL.items() if k not in knob_keys}
    assert _knobs(_vllm_args(bare)) == _knobs(_vllm_args(MODEL))


@pytest.mark.parametrize(
    ("values", "settings"),
    [
        ({"prefixCaching": False, "chunkedPrefill": False, "maxNumBatchedTokens": 8192, "maxNumSeqs": 128,
          "kvCacheDtype": "fp8"},
         {"prefix_caching": False, "chunked_prefill": False, "max_num_batched_tokens": 8192, "max_num_seqs": 128,
          "kv_cache_dtype": "fp8"}),
        ({"speculative": {"method": "ngram", "tokens": 5, "ngramMax": 3, "ngramMin": 2}},
         {"speculative_method": "ngram", "speculative_tokens": 5, "speculative_ngram_max": 3,
          "speculative_ngram_min": 2}),
    ],
)  # fmt: skip
def test_each_knob_renders_the_flag_the_inference_service_uses(values, settings):
    knobs = _knobs(_vllm_args({**MODEL, **values}))
    expected = _as_service_flags(InferenceServiceSettings(device="cuda", **settings))
    # --max-num-seqs is the service's own always-present flag; the chart adds it only when set.
    chart_only = [f"--max-num-seqs={values['maxNumSeqs']}"] if "maxNumSeqs" in values else []
    assert sorted(knobs) == sorted(expected + chart_only)
    if "speculative" in values:
        (config,) = [k for k in knobs if k.startswith("--speculative-config=")]
        assert json.loads(config.split("=", 1)[1])["method"] == "ngram"


def test_a_draft_model_is_named_by_its_folder_in_the_pod():
    model = {**MODEL, "speculative": {"method": "draft", "draftModel": "/models/cache/smollm2-135m"}}
    (config,) = [k for k in _vllm_args(model) if k.startswith("--speculative-config=")]
    assert json.loads(config.split("=", 1)[1]) == {
        "method": "draft_model", "model": "/models/cache/smollm2-135m", "num_speculative_tokens": 3}  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gpus": 0, "kvCacheDtype": "float16"}, "inference model smollm2: kvCacheDtype float16 is not served on CPUs"),
        ({"maxNumSeqs": 256, "maxNumBatchedTokens": 128}, "maxNumBatchedTokens (128) is below maxNumSeqs (256)"),
        ({"chunkedPrefill": False, "maxNumBatchedTokens": 1024},
         "maxNumBatchedTokens (1024) is below maxModelLen (4096); without chunkedPrefill"),
        ({"speculative": {"method": "draft"}}, "speculative.method draft needs speculative.draftModel"),
        ({"kvCacheDtype": "fp4"}, "at '/inference/models/0/kvCacheDtype'"),
        ({"speculative": {"method": "eagle"}}, "at '/inference/models/0/speculative/method'"),
        ({"maxNumSeqs": -1}, "at '/inference/models/0/maxNumSeqs'"),
    ],
)  # fmt: skip
def test_a_knob_vllm_would_refuse_fails_the_render_naming_the_key(values, message):
    values = {"inference": {"gpuNodeSelector": {"gpu": "true"}, "models": [{**MODEL, **values}]}}
    with pytest.raises(Exception, match=re.escape(message)):
        manifests.render(values)
