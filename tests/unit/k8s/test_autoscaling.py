"""Autoscaling of the vLLM replicas on their queues: a KEDA ScaledObject, or an HPA when KEDA is off."""

from __future__ import annotations

import re

import pytest

from tests.unit.k8s import manifests

MODEL = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]


def _inference(objects: list[dict], kind: str) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"
    ]


def test_autoscaling_is_off_by_default_and_replicas_come_from_values():
    objects = manifests.render({})
    assert not _inference(objects, "ScaledObject") and not _inference(objects, "HorizontalPodAutoscaler")
    (deployment,) = _inference(objects, "Deployment")
    assert deployment["spec"]["replicas"] == MODEL["replicas"]


def test_keda_scales_each_model_on_its_own_queue():
    second = {**MODEL, "id": "other", "name": "other-model"}
    values = {"inference": {"models": [MODEL, second], "autoscaling": {"enabled": True, "maxReplicas": 6}}}
    objects = manifests.render(values)
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in _inference(objects, "ScaledObject")}
    deployments = {o["metadata"]["name"]: o for o in _inference(objects, "Deployment")}
    assert set(scaled) == set(deployments)  # one ScaledObject per model, aimed at its Deployment
    for name, obj in scaled.items():
        assert manifests.validate(obj) == []  # against the pinned KEDA CRD
        assert "replicas" not in deployments[name]["spec"]  # Helm upgrades do not fight the autoscaler
        assert (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"]) == (1, 6)
        queries = {t["name"]: t["metadata"]["query"] for t in obj["spec"]["triggers"]}
        assert set(queries) == {"waiting", "running"}  # no wake-up trigger when a replica always runs
        model = deployments[name]["metadata"]["labels"]["lathe.dev/model-id"]
        served = MODEL["name"] if model == MODEL["id"] else second["name"]
        assert f'model_name="{served}"' in queries["waiting"] and "vllm:num_requests_waiting" in queries["waiting"]
        assert f'model_name="{served}"' in queries["running"] and "vllm:num_requests_running" in queries["running"]


def test_scale_to_zero_wakes_on_gateway_traffic_for_the_model():
    objects = manifests.render({"inference": {"autoscaling": {"enabled": True, "minReplicas": 0}}})
    (obj,) = _inference(objects, "ScaledObject")
    assert obj["spec"]["minReplicaCount"] == 0
    wake = next(t for t in obj["spec"]["triggers"] if t["name"] == "gateway-traffic")
    assert f'model="{MODEL["name"]}"' in wake["metadata"]["query"] and wake["metadata"]["activationThreshold"] == "0"
    assert manifests.validate(obj) == []


def test_without_keda_an_hpa_uses_the_same_queue_metrics():
    objects = manifests.render({"inference": {"autoscaling": {"enabled": True, "keda": False, "targetWaiting": 3}}})
    assert not _inference(objects, "ScaledObject")
    (hpa,) = _inference(objects, "HorizontalPodAutoscaler")
    (deployment,) = _inference(objects, "Deployment")
    assert manifests.validate(hpa) == []
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}  # fmt: skip
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]}
    assert targets == {"vllm_num_requests_waiting": "3", "vllm_num_requests_running": "32"}


def test_scale_to_zero_without_keda_is_refused():
    with pytest.raises(Exception, match=re.escape("inference.autoscaling.minReplicas 0 needs KEDA")):
        manifests.render({"inference": {"autoscaling": {"enabled": True, "keda": False, "minReplicas": 0}}})


def test_an_autoscaled_model_keeps_a_disruption_budget():
    objects = manifests.render({"inference": {"autoscaling": {"enabled": True}}})
    assert [o for o in objects if o["kind"] == "PodDisruptionBudget" and o["metadata"]["labels"].get(
        "lathe.dev/model-id") == MODEL["id"]]  # fmt: skip
