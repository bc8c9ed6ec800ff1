"""The production values fit the GPU cluster that terraform/examples/dev builds (see capacity.py)."""

from __future__ import annotations

import copy

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
    assert problems and problems[-1].startswith("GPUs: the values can run 15 GPU pods at once")


def test_a_pod_no_pool_admits_fails(pools):
    problems = capacity.check(_production(inference__gpuNodeSelector={"lathe.dev/node-pool": "a100"}), pools)
    assert any("lathe-inference-llama-8b" in p and "no pool admits it" in p for p in problems)


def test_a_gpu_pod_without_the_toleration_cannot_land_on_the_tainted_pool(pools):
    problems = capacity.check(_production(inference__gpuTolerations=None), pools)
    assert any("lathe-inference-smollm2" in p and "no pool admits it" in p for p in problems)
