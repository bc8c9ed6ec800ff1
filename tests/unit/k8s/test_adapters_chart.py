"""LoRA adapters on Kubernetes: `inference.models[].adapters` fetches each registered adapter in
an init container after its base model, serves it from the same vLLM under its own name, and tells
the gateway which model's servers answer for it; a model without adapters renders as before, and
what vLLM or the gateway would refuse fails the render naming the key."""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.unit.k8s import manifests

MODEL = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
PLAIN = {**copy.deepcopy(MODEL), "id": "plain", "name": "plain-model"}
ADAPTERS = [{"name": "docs-adapter", "version": "5"}, {"name": "sql-adapter", "alias": "staging"}]
LORA_FLAGS = ("--enable-lora", "--max-lora", "--max-cpu-loras", "--lora-modules")


def _model(**changes) -> dict:
    return {**copy.deepcopy(MODEL), "version": "3", **changes}


def _deployment(objects: list[dict], name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return found


def _pod(objects: list[dict], name: str) -> dict:
    return _deployment(objects, name)["spec"]["template"]["spec"]


def _vllm_args(objects: list[dict], name: str) -> list[str]:
    (vllm,) = _pod(objects, name)["containers"]
    return vllm["args"]


def _targets(objects: list[dict]) -> dict[str, dict]:
    """The gateway's discovery targets, by Service name."""
    (container,) = _pod(objects, "lathe-gateway")["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return {t["service"]: t for t in json.loads(env["LATHE_GATEWAY_K8S_SERVICES"])}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    """A model with two adapters and a canary, beside a model with none."""
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk (in the dev extras)")
    model = _model(alias="production", adapters=ADAPTERS, canary={"version": "4"})
    return manifests.render({"inference": {"models": [model, PLAIN]}})


def test_each_adapter_is_fetched_after_the_model_and_checked_against_it(objects):
    track = "lathe-inference-smollm2"
    assert manifests.validate(_deployment(objects, track)) == []
    model_fetch, *fetches = _pod(objects, track)["initContainers"]
    assert model_fetch["name"] == "lathe-model-fetch"
    wait = next(a for a in model_fetch["command"] if a.startswith("--wait-s="))  # the model's patience
    assert [c["name"] for c in fetches] == ["lathe-fetch-adapter-0", "lathe-fetch-adapter-1"]
    assert fetches[0]["command"] == [
        "python", "-m", "lathe.model_fetch", "--name=docs-adapter", "--alias=production", "--version=5",
        "--dest=/models", "--link=/served/adapters/docs-adapter", "--adapter-of=/served/model",
        "--wait-for-alias", wait]  # fmt: skip
    # No version: the adapter's own alias is resolved when the pod starts.
    assert fetches[1]["command"][3:6] == ["--name=sql-adapter", "--alias=staging", "--dest=/models"]
    assert not [a for a in fetches[1]["command"] if a.startswith("--version")]
    for fetch in fetches:
        for key in ("image", "imagePullPolicy", "resources", "securityContext", "volumeMounts"):
            assert fetch[key] == model_fetch[key], key
        # The model's pin (LATHE_INFERENCE_VERSION) would be model_fetch's --version default for the adapter.
        assert [e["name"] for e in fetch["env"]] == ["LATHE_MLFLOW_TRACKING_URI", "HOME"]
    assert any(e["name"] == "LATHE_INFERENCE_VERSION" for e in model_fetch["env"])


def test_vllm_serves_each_adapter_under_its_name_from_its_link(objects):
    args = _vllm_args(objects, "lathe-inference-smollm2")
    lora = args[args.index("--enable-lora") :]
    assert lora == [
        "--enable-lora", "--max-loras=4", "--max-lora-rank=16", "--lora-modules",
        "docs-adapter=/served/adapters/docs-adapter", "sql-adapter=/served/adapters/sql-adapter"]  # fmt: skip


def test_a_canary_serves_no_adapter_since_they_were_trained_on_the_stable_version(objects):
    canary = "lathe-inference-smollm2-canary"
    assert manifests.validate(_deployment(objects, canary)) == []
    assert [c["name"] for c in _pod(objects, canary)["initContainers"]] == ["lathe-model-fetch"]
    assert not [a for a in _vllm_args(objects, canary) if a.startswith(LORA_FLAGS)]


def test_the_gateway_routes_an_adapters_name_to_its_models_stable_servers_only(objects):
    targets = _targets(objects)
    assert targets["lathe-inference-smollm2"]["adapters"] == ["docs-adapter", "sql-adapter"]
    assert targets["lathe-inference-smollm2"]["model"] == MODEL["name"]
    assert "adapters" not in targets["lathe-inference-smollm2-canary"]
    assert "adapters" not in targets["lathe-inference-plain"]


def test_a_model_without_adapters_renders_no_lora_and_no_extra_fetch(objects):
    assert not [a for a in _vllm_args(objects, "lathe-inference-plain") if a.startswith(LORA_FLAGS)]
    assert [c["name"] for c in _pod(objects, "lathe-inference-plain")["initContainers"]] == ["lathe-model-fetch"]


def test_the_lora_knobs_reach_vllm():
    model = _model(adapters=ADAPTERS[:1], lora={"maxLoras": 2, "maxLoraRank": 64, "maxCpuLoras": 8})
    args = _vllm_args(manifests.render({"inference": {"models": [model]}}), "lathe-inference-smollm2")
    assert [a for a in args if a.startswith(LORA_FLAGS)] == [
        "--enable-lora", "--max-loras=2", "--max-lora-rank=64", "--max-cpu-loras=8", "--lora-modules"]  # fmt: skip


def test_a_new_adapter_version_rolls_the_pods():
    def template(version) -> dict:
        model = _model(adapters=[{"name": "docs-adapter", "version": version}])
        return _deployment(manifests.render({"inference": {"models": [model]}}), "lathe-inference-smollm2")["spec"][
            "template"]  # fmt: skip

    before, after = template("5"), template(6)  # `--set` gives a number, a values file a string
    assert before != after
    assert "--version=6" in after["spec"]["initContainers"][1]["command"]


def test_a_key_for_the_release_can_ask_for_the_adapters():
    values = {"gateway": {"adminKey": {"existingSecret": "admin"}},
              "inference": {"models": [_model(adapters=ADAPTERS), PLAIN]}}  # fmt: skip
    notes = manifests.render_files(values)["lathe/templates/NOTES.txt"]
    assert f"--models {MODEL['name']},docs-adapter,sql-adapter,plain-model" in notes


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([_model(adapters=[{"alias": "champion"}])],
         "inference model smollm2: adapters[0] has no name; set adapters[0].name"),
        ([_model(adapters=[{"name": "plain-model"}]), PLAIN],
         "inference model smollm2: adapters[0].name plain-model is the name of served model plain"),
        ([_model(adapters=[{"name": "docs-adapter"}]), {**PLAIN, "adapters": [{"name": "docs-adapter"}]}],
         "inference model plain: adapters[0].name docs-adapter is listed twice (also under model smollm2)"),
        ([_model(adapters=ADAPTERS, lora={"maxLoras": 8, "maxCpuLoras": 4})],
         "inference model smollm2: lora.maxCpuLoras (4) is below lora.maxLoras (8)"),
        ([_model(adapters=ADAPTERS, lora={"maxLoraRank": 24})],
         "inference model smollm2: lora.maxLoraRank 24 is not a rank vLLM serves: 1, 8, 16, 32, 64, 128, 256, 320"),
        ([_model(adapters=ADAPTERS, maxNumSeqs=256, maxNumBatchedTokens=512, speculative={"method": "ngram"})],
         "maxNumBatchedTokens (512) must be at least maxNumSeqs x (speculative.tokens + 1) (1024)"),
        ([_model(adapters="docs-adapter")],
         "at '/inference/models/0/adapters': got string, want array"),
        ([_model(adapters=[{"name": "docs=adapter"}])],
         "at '/inference/models/0/adapters/0/name': 'docs=adapter' does not match pattern"),
        ([_model(adapters=[{"name": "docs-adapter", "rank": 8}])],
         "at '/inference/models/0/adapters/0': additional properties 'rank' not allowed"),
        ([_model(adapters=ADAPTERS, lora={"maxLoras": 0})],
         "at '/inference/models/0/lora/maxLoras': minimum: got 0, want 1"),
    ],
)  # fmt: skip
def test_an_adapter_setting_that_would_be_refused_fails_the_render_naming_the_key(models, message):
    with pytest.raises(Exception, match=re.escape(message)):
        manifests.render({"inference": {"models": models}})
