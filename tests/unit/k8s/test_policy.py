"""Security defaults hold for every object of every ci/*-values.yaml.

Non-root pods, read-only root filesystems, no capabilities, requests and limits and probes on
every container, pinned images, one ServiceAccount per component with API access for the
gateway alone (and the Ray head's autoscaler, which the KubeRay operator grants), secrets only
by reference, default-deny NetworkPolicies with an allow policy for every component.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.k8s import manifests

SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ADMIN_KEY|ACCESS_KEY")
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                   "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "helm.sh/chart")  # fmt: skip


def pods(all_objects):
    for values_file, obj in all_objects:
        for where, spec in manifests.pod_specs(obj):
            yield f"{values_file}: {obj['kind']}/{obj['metadata']['name']} ({where})", obj, spec


def test_pods_run_as_non_root_with_seccomp(all_objects):
    for name, _, spec in pods(all_objects):
        context = spec.get("securityContext", {})
        assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) != 0, name
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name


def test_containers_drop_everything_and_have_a_read_only_root(all_objects):
    for name, _, spec in pods(all_objects):
        for container in manifests.containers(spec):
            context = container.get("securityContext", {})
            where = f"{name} {container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where


def test_every_container_has_requests_and_limits(all_objects):
    for name, obj, spec in pods(all_objects):
        for container in manifests.containers(spec):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{name} {container['name']} {kind}"
        if obj["kind"] == "RayCluster" and obj["spec"].get("enableInTreeAutoscaling"):
            autoscaler = obj["spec"]["autoscalerOptions"]
            assert autoscaler["resources"]["limits"] and autoscaler["securityContext"]["readOnlyRootFilesystem"]


def test_long_running_containers_have_liveness_and_readiness_probes(all_objects):
    for name, obj, spec in pods(all_objects):
        if obj["kind"] == "RayJob":
            continue  # the submitter is a batch Job: it runs `ray job submit` and exits
        for container in manifests.containers(spec, init=False):
            assert "livenessProbe" in container and "readinessProbe" in container, f"{name} {container['name']}"


def test_images_are_pinned(all_objects):
    for name, _, spec in pods(all_objects):
        for container in manifests.containers(spec):
            image = container["image"]
            tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
            assert tag and tag != "latest", f"{name}: {image}"


def test_every_container_is_named_for_the_restart_alert(all_objects):
    for name, _, spec in pods(all_objects):
        for container in manifests.containers(spec):
            assert container["name"].startswith("lathe-"), f"{name}: {container['name']}"


def test_only_the_gateway_and_the_ray_autoscaler_get_api_tokens(all_objects):
    for name, obj, spec in pods(all_objects):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        allowed = component == "gateway" or (
            obj["kind"] == "RayCluster" and "(head)" in name and obj["spec"]["enableInTreeAutoscaling"]
        )
        assert spec.get("automountServiceAccountToken") is allowed, name
    for values_file, obj in all_objects:
        if obj["kind"] == "ServiceAccount":
            gateway = obj["metadata"]["name"].endswith("-gateway")
            assert obj["automountServiceAccountToken"] is gateway, f"{values_file}: {obj['metadata']['name']}"


def test_one_service_account_per_component(all_objects):
    accounts = {(f, o["metadata"]["name"]) for f, o in all_objects if o["kind"] == "ServiceAccount"}
    for name, obj, spec in pods(all_objects):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        values_file = name.split(":")[0]
        account = spec.get("serviceAccountName")
        assert account == f"lathe-{component}", name
        assert (values_file, account) in accounts, name


def test_rbac_is_the_gateways_read_only_discovery(all_objects):
    kinds = {o["kind"] for _, o in all_objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    for _, obj in all_objects:
        if obj["kind"] == "Role":
            assert obj["metadata"]["name"] == "lathe-gateway"
            resources = {r for rule in obj["rules"] for r in rule["resources"]}
            verbs = {v for rule in obj["rules"] for v in rule["verbs"]}
            assert resources == {"endpoints", "endpointslices"} and verbs == {"get", "list", "watch"}
        if obj["kind"] == "RoleBinding":
            assert [s["name"] for s in obj["subjects"]] == ["lathe-gateway"]


def test_secrets_only_by_reference(all_objects):
    assert not [o for _, o in all_objects if o["kind"] == "Secret"]
    for name, _, spec in pods(all_objects):
        secret_volumes = {v["name"] for v in spec.get("volumes", []) if "secret" in v}
        for container in manifests.containers(spec):
            secret_dirs = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in secret_volumes]
            for env in container.get("env", []):
                if env["name"].endswith("_FILE") and "value" in env:
                    # A secret as a file (the better way): the variable names a file of a mounted Secret.
                    assert any(env["value"].startswith(f"{d}/") for d in secret_dirs), f"{name}: {env['name']}"
                elif SECRET_NAMES.search(env["name"]):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], f"{name}: {env['name']}"


def test_every_object_carries_the_standard_labels(all_objects):
    for values_file, obj in all_objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in REQUIRED_LABELS if label not in labels]
        assert not missing, f"{values_file}: {obj['kind']}/{obj['metadata']['name']} lacks {missing}"


@pytest.mark.parametrize("values_file", ["default-values.yaml", "production-gpu-values.yaml", "kind-values.yaml"])
def test_network_policies_deny_by_default_and_allow_each_component(rendered, values_file):
    objects = rendered[values_file]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (deny,) = [p for p in policies if p["metadata"]["name"].endswith("default-deny")]
    assert deny["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": "lathe"}}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in deny["spec"]
    allowed = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in policies}
    for _, obj in [(values_file, o) for o in objects]:
        for _where, _spec in manifests.pod_specs(obj):
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            if obj["kind"] == "RayJob":
                component = "ray-submitter"
            assert component in allowed, f"no allow policy for {component}"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            # Only the gateway takes traffic from outside the release, and only on its API port.
            if any("ipBlock" in peer or peer == {"namespaceSelector": {}} for peer in rule.get("from", [])):
                assert policy["metadata"]["name"] == "lathe-gateway", policy["metadata"]["name"]


@pytest.mark.parametrize("dockerfile", sorted((manifests.REPO / "deploy" / "docker").glob("*.Dockerfile")), ids=str)
def test_dockerfiles_pin_their_base_and_end_non_root(dockerfile):
    lines = [line.split() for line in dockerfile.read_text().splitlines() if line and not line.startswith("#")]
    bases = [words[1] for words in lines if words[0] == "FROM"]
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
