"""`helm install --atomic --wait` from nothing: what Helm runs, in what order, for every values set.

Helm runs hooks outside the release's readiness wait. A pre-install or post-install hook
would either run before MLflow exists or wait behind vLLM pods that cannot be ready before
their model is registered, so the first install registers its models in the inference pods'
init container instead (helm/lathe/README.md, "First install"). The only hooks are
`helm test`'s, and the policy that lets its pod out is created before the pod.
"""

from __future__ import annotations

import pytest

from tests.unit.k8s import manifests


def _hooks(values_file) -> list[tuple[str, str, int, str]]:
    values = manifests.load_values(values_file)
    values.setdefault("helmTest", {})["apiKey"] = {"existingSecret": "lathe-test-key"}  # the test pod renders
    objects = manifests.render(values)
    out = []
    for obj in objects:
        annotations = obj["metadata"].get("annotations") or {}
        if "helm.sh/hook" in annotations:
            weight = int(annotations.get("helm.sh/hook-weight", "0"))
            out.append(
                (annotations["helm.sh/hook"], obj["kind"], weight, annotations.get("helm.sh/hook-delete-policy", ""))
            )
    return out


@pytest.mark.parametrize("values_file", manifests.CI_VALUES, ids=lambda p: p.name)
def test_only_helm_test_hooks_exist_and_the_policy_precedes_the_pod(values_file):
    hooks = _hooks(values_file)
    assert {hook for hook, *_ in hooks} == {"test"}, hooks  # nothing runs at install or upgrade time
    weights = {kind: weight for _, kind, weight, _ in hooks}
    assert weights["NetworkPolicy"] < weights["Pod"]  # Helm creates hooks in ascending weight
    for _, kind, _, delete in hooks:
        assert "before-hook-creation" in delete, kind  # a second `helm test` replaces the first run's objects


@pytest.mark.parametrize("values_file", manifests.CI_VALUES, ids=lambda p: p.name)
def test_each_model_pod_registers_and_fetches_its_model_before_vllm_starts(values_file):
    objects = manifests.render(manifests.load_values(values_file))
    deployments = [o for o in objects if o["kind"] == "Deployment"
                   and o["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]  # fmt: skip
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        # Init containers run in order: the model first, then its LoRA adapters, which must fit it.
        fetch, *adapters = pod["initContainers"]
        assert fetch["name"] == "lathe-model-fetch"
        assert all("--adapter-of=/served/model" in adapter["command"] for adapter in adapters)
        for container in (fetch, *adapters):
            assert container["command"][:3] == ["python", "-m", "lathe.model_fetch"]
            assert "--wait-for-alias" in container["command"]  # waits with backoff instead of failing the release
