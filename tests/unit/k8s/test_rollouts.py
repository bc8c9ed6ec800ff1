"""Rollouts and drains of the serving pods: surge, stream draining and disruption budgets."""

from __future__ import annotations

import re

import pytest

from tests.unit.k8s import manifests

DEFAULT_MODEL = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]


def _vllm(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"].get("labels", {}).get(
        "app.kubernetes.io/component") == "inference")  # fmt: skip


def _pdbs(objects: list[dict]) -> dict[str, dict]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objects if o["kind"] == "PodDisruptionBudget"
    }


def test_a_stopping_vllm_pod_drains_its_streams_before_it_is_killed():
    deployment = _vllm(manifests.render({"inference": {"terminationGracePeriodSeconds": 300, "preStopSeconds": 15}}))
    spec = deployment["spec"]["template"]["spec"]
    vllm = next(c for c in spec["containers"] if c["name"] == "lathe-vllm")
    assert spec["terminationGracePeriodSeconds"] == 300
    assert vllm["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert manifests.validate(deployment) == []


def test_a_pre_stop_wait_as_long_as_the_grace_period_is_refused():
    message = re.escape("inference.preStopSeconds (60) must be below inference.terminationGracePeriodSeconds (60)")
    with pytest.raises(Exception, match=message):
        manifests.render({"inference": {"terminationGracePeriodSeconds": 60, "preStopSeconds": 60}})


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), (0, 1), (2, 0)])
def test_max_surge_zero_rolls_in_place_with_no_spare_gpu(surge, unavailable):
    strategy = _vllm(manifests.render({"inference": {"maxSurge": surge}}))["spec"]["strategy"]["rollingUpdate"]
    assert (strategy["maxSurge"], strategy["maxUnavailable"]) == (surge, unavailable)


def test_every_component_with_more_than_one_replica_has_a_disruption_budget():
    values = {
        "inference": {"models": [{**DEFAULT_MODEL, "replicas": 3}]},
        "rag": {"replicaCount": 2},
        "agent": {"replicaCount": 2},
    }
    objects = manifests.render(values)
    pdbs = _pdbs(objects)
    assert set(pdbs) >= {"gateway", "inference", "rag", "agent"}
    for component in ("inference", "rag", "agent"):
        assert pdbs[component]["spec"]["maxUnavailable"] == 1
        assert manifests.validate(pdbs[component]) == []
    # Each budget selects exactly the pods of its component (and model).
    deployment = _vllm(objects)
    selector = pdbs["inference"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector["lathe.dev/model-id"] == DEFAULT_MODEL["id"]


def test_a_single_replica_gets_no_budget_that_would_block_a_drain():
    pdbs = _pdbs(manifests.render({"rag": {"replicaCount": 1}, "agent": {"replicaCount": 1}}))
    assert not {"inference", "rag", "agent"} & set(pdbs)


def test_scheduling_knobs_reach_the_vllm_pod_spec():
    values = {"inference": {"priorityClassName": "lathe-serving", "runtimeClassName": "nvidia", "shmSize": "8Gi"}}
    deployment = _vllm(manifests.render(values))
    spec = deployment["spec"]["template"]["spec"]
    assert (spec["priorityClassName"], spec["runtimeClassName"]) == ("lathe-serving", "nvidia")
    assert next(v for v in spec["volumes"] if v["name"] == "dshm")["emptyDir"] == {
        "medium": "Memory",
        "sizeLimit": "8Gi",
    }
    # Replicas spread over zones, each model counted on its own.
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"]["lathe.dev/model-id"] == DEFAULT_MODEL["id"]
    assert (
        spread["labelSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert manifests.validate(deployment) == []
    # A CPU model gets no GPU runtime class, and no knob set means no field.
    cpu = _vllm(
        manifests.render({"inference": {"runtimeClassName": "nvidia", "models": [{**DEFAULT_MODEL, "gpus": 0}]}})
    )
    assert "runtimeClassName" not in cpu["spec"]["template"]["spec"]
    assert "priorityClassName" not in _vllm(manifests.render({}))["spec"]["template"]["spec"]
