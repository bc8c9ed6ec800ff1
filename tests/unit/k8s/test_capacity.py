"""The production values fit the GPU cluster that terraform/examples/dev builds (see capacity.py)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from tests.unit.k8s import capacity, manifests
from tests.unit.k8s.test_terraform import parse, unquote_all

PRODUCTION = manifests.CHART / "ci" / "production-gpu-values.yaml"
EXAMPLE = manifests.REPO / "terraform" / "examples" / "dev"


@pytest.fixture(scope="module")
def pools() -> list[capacity.Pool]:
    return capacity.pools_from_terraform(unquote_all(parse(EXAMPLE)))


def _production(**changes) -> list[dict]:
    values = copy.deepcopy(manifests.load_values(PRODUCTION))
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = values
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[key] = value
    return manifests.render(values)


def test_the_pools_are_read_from_terraform(pools):
    by_name = {p.name: p for p in pools}
    assert set(by_name) == {"cpu", "gpu"}
    assert by_name["gpu"].taints == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert by_name["gpu"].node()["gpus"] == 1 and by_name["cpu"].node()["gpus"] == 0


def test_every_production_pod_schedules_surge_and_autoscaling_maxima_included(pools):
    assert capacity.check(_production(), pools) == []


def test_a_vllm_pod_too_big_for_a_gpu_node_fails_naming_it(pools):
    big = {"requests": {"cpu": "4", "memory": "96Gi"}, "limits": {"cpu": "8", "memory": "96Gi"}}
    problems = capacity.check(_production(inference__models__0__resources=big), pools)
    assert len(problems) == 1 and problems[0].startswith("Deployment/lathe-inference-llama-8b (template): requests")


def test_more_gpu_pods_than_the_pools_can_hold_fails(pools):
    problems = capacity.check(_production(inference__models__0__replicas=8), pools)
    assert any(p.startswith("GPUs: the values can run 15 GPU pods at once") for p in problems)
    # Packing says which pods are left over: the smallest GPU pods, once the larger ones hold every node.
    left = "Deployment/lathe-inference-smollm2 (template): 2 of 2 pods find no room"
    assert any(p.startswith(left) for p in problems)


def test_a_pod_no_pool_admits_fails(pools):
    problems = capacity.check(_production(inference__gpuNodeSelector={"lathe.dev/node-pool": "a100"}), pools)
    assert any("lathe-inference-llama-8b" in p and "no pool admits it" in p for p in problems)


def test_a_gpu_pod_without_the_toleration_cannot_land_on_the_tainted_pool(pools):
    problems = capacity.check(_production(inference__gpuTolerations=None), pools)
    assert any("lathe-inference-smollm2" in p and "no pool admits it" in p for p in problems)


def test_surge_follows_each_update_strategy():
    groups = {g.where.split(" ")[0]: g.count for g in capacity.pods_of(_production())}
    values = manifests.load_values(PRODUCTION)
    most = values["gateway"]["autoscaling"]["maxReplicas"]
    assert groups["Deployment/lathe-gateway"] == most + -(-most * 25 // 100)  # Kubernetes' default 25%, rounded up
    assert groups["Deployment/lathe-mlflow"] == 1  # Recreate: the old pod goes before the new one comes
    assert groups["Deployment/lathe-inference-llama-8b"] == values["inference"]["models"][0]["replicas"] + 1


def test_the_cpu_pools_maximum_holds_everything_that_runs_at_once(pools):
    """Each pod fits one node, but their sum must fit the pool's maximum: Ray's CPU workers at their
    maximum, the gateway at its HPA maximum, every surge, and the cluster add-ons' own pods."""
    cpu = next(p for p in pools if p.name == "cpu")
    load = [g for g in capacity.pods_of(_production()) + capacity.addon_pods() if g.admitted_by(cpu)]
    needed = sum(g.count * g.cpu for g in load) / cpu.node()["cpu"]
    smaller = [dataclasses.replace(cpu, max_size=int(needed)), *(p for p in pools if p is not cpu)]
    problems = capacity.check(_production(), smaller)
    assert problems and all("find no room on the" in p and " cpu nodes " in p for p in problems)


def test_first_fit_decreasing_packs_what_arrival_order_would_not():
    pool = capacity.Pool("cpu", ["m6i.2xlarge"], 2, {"lathe.dev/node-pool": "cpu"})  # 2 nodes of 7.5 CPU
    small, large = (capacity.Pods(name, 2, cpus, 1, 0, {}, []) for name, cpus in (("small", 3), ("large", 4)))
    assert capacity.pack([small, large], [pool]) == []  # 4+3 on each node; in arrival order 3+3, 4, then no room
    assert capacity.pack([dataclasses.replace(small, count=3), large], [pool]) == [
        "small: 1 of 3 pods find no room on the 2 cpu nodes (cpu 7.5, memory 29GiB, gpus 0 each) left after "
        "first-fit decreasing packing of everything that runs at once"
    ]


def test_the_cluster_add_ons_pods_are_counted():
    names = {g.where for g in capacity.addon_pods()}
    assert {"add-on prometheus", "add-on cluster-autoscaler", "add-on metrics-server"} <= names
