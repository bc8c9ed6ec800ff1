"""Custom resources validate against the CRDs of the versions Terraform installs, vendored in deploy/crds/."""

from __future__ import annotations

import re

from tests.unit.k8s import manifests


def raycluster(**extra) -> dict:
    spec = {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": "r"}]}}}, **extra}
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r"}, "spec": spec}


def test_pinned_kuberay_knows_auth_options_and_rejects_newer_fields():
    assert manifests.validate(raycluster(authOptions={"mode": "token"})) == []
    # spec.tlsOptions first appears in KubeRay 1.7.0: the pinned 1.6.2 CRD must refuse it.
    problems = manifests.validate(raycluster(tlsOptions={}))
    assert problems and "tlsOptions" in problems[0], problems


def test_terraform_and_readme_pin_the_vendored_kuberay_version():
    pinned = manifests.pinned_crd_versions()
    assert set(pinned) >= {"kuberay", "prometheus-operator", "keda", "gateway-api"}
    text = (manifests.REPO / "terraform" / "modules" / "platform" / "variables.tf").read_text()
    kuberay_tf = re.search(r'variable "kuberay_version".*?default\s*=\s*"([^"]+)"', text, re.S)[1]
    assert kuberay_tf == pinned["kuberay"]
    readme = (manifests.CHART / "README.md").read_text()
    assert set(re.findall(r"kuberay-operator --version (\S+)", readme)) == {pinned["kuberay"]}


def test_vendored_prometheus_operator_crds_are_those_of_the_pinned_kube_prometheus_stack():
    text = (manifests.REPO / "terraform" / "modules" / "platform" / "variables.tf").read_text()
    chart = re.search(r'variable "kube_prometheus_stack_version".*?default\s*=\s*"([^"]+)"', text, re.S)[1]
    folder = manifests.CRDS / f"prometheus-operator-v{manifests.pinned_crd_versions()['prometheus-operator']}"
    assert f"kube-prometheus-stack-{chart}" in (folder / "SOURCE.md").read_text()
