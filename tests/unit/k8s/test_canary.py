"""A model's canary: the candidate version of a rollout served beside the stable vLLM servers.

`inference.models[].canary.version` renders a second Deployment and Service `<name>-canary`
pinned to that version, which the gateway discovers at weight 0; without it nothing extra renders.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.unit.k8s import manifests
from tests.unit.k8s.netpol import Pod, allows

MODEL = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
STABLE, CANARY = "lathe-inference-smollm2", "lathe-inference-smollm2-canary"


def _values(stable: str = "3", **canary) -> dict:
    model = {**copy.deepcopy(MODEL), "version": stable, "source": "hf://org/repo", "canary": canary}
    # The stable servers autoscale; the canary must not.
    return {"inference": {"models": [model], "autoscaling": {"enabled": True, "maxReplicas": 4}}}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk (in the dev extras)")
    return manifests.render(_values(version="4", replicas=2))


def _get(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _gateway_targets(objects: list[dict]) -> list[dict]:
    gateway = _get(objects, "Deployment", "lathe-gateway")
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    return json.loads(env["LATHE_GATEWAY_K8S_SERVICES"])


def test_the_canary_deployment_pins_the_candidate_version(objects):
    deployment = _get(objects, "Deployment", CANARY)
    assert manifests.validate(deployment) == []
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["lathe.dev/model-version"] == "4" and labels["lathe.dev/track"] == "canary"
    assert deployment["metadata"]["labels"]["lathe.dev/model-version"] == "4"
    fetch = pod["spec"]["initContainers"][0]
    assert "--version=4" in fetch["command"]
    assert {"name": "LATHE_INFERENCE_VERSION", "value": "4"} in fetch["env"]
    # The stable servers register a first version from the source; the candidate is registered already.
    assert not [a for a in fetch["command"] if a.startswith("--source")]
    assert "--source=hf://org/repo" in _get(objects, "Deployment", STABLE)["spec"]["template"]["spec"][
        "initContainers"][0]["command"]  # fmt: skip
    vllm = pod["spec"]["containers"][0]
    assert f"--served-model-name={MODEL['name']}" in vllm["args"]  # the same name clients ask for
    # Fixed replicas, no autoscaler: the rollout sets its share of traffic.
    assert deployment["spec"]["replicas"] == 2
    scaled = [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "ScaledObject"]
    assert scaled == [STABLE]


def test_the_canary_runs_as_the_stable_servers_do(objects):
    canary, stable = (_get(objects, "Deployment", n)["spec"]["template"]["spec"] for n in (CANARY, STABLE))
    assert canary["securityContext"]["runAsNonRoot"] is True
    assert canary["securityContext"] == stable["securityContext"]
    every = [spec["initContainers"] + spec["containers"] for spec in (canary, stable)]
    for c, s in zip(*every, strict=True):
        assert c["securityContext"] == s["securityContext"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert canary["serviceAccountName"] == stable["serviceAccountName"]
    assert canary["automountServiceAccountToken"] is False
    assert canary["containers"][0]["resources"] == stable["containers"][0]["resources"]


def test_stable_and_canary_never_select_each_others_pods(objects):
    pods = {n: _get(objects, "Deployment", n)["spec"]["template"]["metadata"]["labels"] for n in (STABLE, CANARY)}
    for name, other in ((STABLE, CANARY), (CANARY, STABLE)):
        selectors = [
            _get(objects, "Deployment", name)["spec"]["selector"]["matchLabels"],
            _get(objects, "Service", name)["spec"]["selector"],
            _get(objects, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"],
        ]
        for selector in selectors:
            assert selector.items() <= pods[name].items()
            assert not selector.items() <= pods[other].items()
    service = _get(objects, "Service", CANARY)
    assert manifests.validate(service) == []
    # Kubernetes copies these onto the EndpointSlices, where the gateway reads the version.
    assert service["metadata"]["labels"]["lathe.dev/model-version"] == "4"
    assert _get(objects, "Service", STABLE)["metadata"]["labels"]["lathe.dev/model-version"] == "3"


def test_the_gateway_discovers_the_canary_at_weight_zero(objects, monkeypatch):
    from services.gateway.settings import GatewayServiceSettings

    targets = _gateway_targets(objects)
    monkeypatch.setenv("LATHE_GATEWAY_K8S_SERVICES", json.dumps(targets))
    parsed = {t.service: t for t in GatewayServiceSettings().service_targets()}
    assert set(parsed) == {STABLE, CANARY}
    assert (parsed[CANARY].model, parsed[CANARY].version, parsed[CANARY].weight) == (MODEL["name"], "4", 0.0)
    # The stable's pinned version comes from its Service's label; "auto" is the fallback, so pinning
    # the stable rolls the vLLM pods and leaves the gateway's environment as it was.
    assert (parsed[STABLE].model, parsed[STABLE].version, parsed[STABLE].weight) == (MODEL["name"], "auto", 100.0)


def test_after_a_promotion_the_stable_rolls_to_the_candidate_and_the_gateway_stays(objects):
    """The hand-over: the stable pinned to the promoted version while the canary still serves it."""
    # `--set …canary.version=4` gives a number: accepted, and rendered as a string.
    handover = manifests.render(_values(stable="4", version=4, replicas=1))
    gateway = [_get(o, "Deployment", "lathe-gateway")["spec"]["template"] for o in (objects, handover)]
    assert gateway[0] == gateway[1]
    stable = [_get(o, "Deployment", STABLE)["spec"]["template"]["metadata"] for o in (objects, handover)]
    assert stable[0]["annotations"]["checksum/model"] != stable[1]["annotations"]["checksum/model"]
    for name in (STABLE, CANARY):
        assert _get(handover, "Service", name)["metadata"]["labels"]["lathe.dev/model-version"] == "4"
    # One canary replica: no disruption budget that would block a node drain.
    assert not [o for o in handover if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == CANARY]


def test_network_policies_admit_the_gateway_alone_to_the_canary(objects):
    def pod(name: str) -> Pod:
        return Pod(_get(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"])

    canary, gateway, mlflow = pod(CANARY), pod("lathe-gateway"), pod("lathe-mlflow")
    assert allows(objects, gateway, canary, 8000)
    assert not allows(objects, pod("lathe-rag"), canary, 8000)
    assert not allows(objects, pod("lathe-agent"), canary, 8000)
    assert not allows(objects, Pod({"app": "notebook"}, "team-a"), canary, 8000)
    assert not allows(objects, gateway, canary, 9100)
    assert allows(objects, canary, mlflow, 5000)  # the init container downloads the candidate
    assert allows(objects, gateway, mlflow, 5000)  # a rollout moves the alias and tags the versions


def test_without_a_canary_block_nothing_extra_renders(default_objects):
    assert not [o["metadata"]["name"] for o in default_objects if "canary" in o["metadata"]["name"]]
    assert not [o for o in default_objects if "lathe.dev/track" in o["metadata"].get("labels", {})]
    (target,) = _gateway_targets(default_objects)
    # An unpinned stable follows the alias: its version is "auto" (from /health, when a backend reports one).
    assert (target["service"], target["version"], target["weight"]) == (STABLE, "auto", 100)
    assert _get(default_objects, "Service", STABLE)["metadata"]["labels"]["lathe.dev/model-version"] == "auto"


def test_a_canary_version_must_be_a_number():
    with pytest.raises(Exception, match=re.escape("at '/inference/models/0/canary/version'")):
        manifests.render(_values(version="latest"))
