"""Static checks of terraform/: every file parses (python-hcl2) and the modules are wired.

`terraform init` cannot reach the provider registry here, so the wiring is checked from the
parsed files: every module input is a variable of that module, every required variable is
given, every variable is used, every output a caller reads exists, node pools carry their
label and the GPU pool its taint, and the artifacts bucket is encrypted, versioned and private.
`terraform fmt -check` runs when the binary is installed (skipped, alone, when it is not).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.k8s import capacity, manifests

TERRAFORM = manifests.REPO / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
ROOTS = [*MODULES, TERRAFORM / "examples" / "dev"]


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def unquote_all(value: Any) -> Any:
    """``unquote`` through nested blocks, keys included."""
    if isinstance(value, dict):
        return {unquote(k): unquote_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unquote_all(v) for v in value]
    return unquote(value)


def parse(directory: Path) -> dict[str, list[dict]]:
    hcl2 = pytest.importorskip("hcl2", reason="pip install python-hcl2 (in the dev extras)")
    merged: dict[str, list[dict]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for key, blocks in hcl2.load(handle).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def labelled(parsed: dict, kind: str) -> dict[str, dict]:
    """``name -> body`` of the variable/output/module blocks."""
    return {unquote(name): body for block in parsed.get(kind, []) for name, body in block.items()}


def resources(parsed: dict, rtype: str) -> list[dict]:
    found = []
    for block in parsed.get("resource", []):
        for type_name, named in block.items():
            if unquote(type_name) == rtype:
                found += list(named.values())
    return found


def source_text(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_variables_are_typed_described_and_used(root):
    parsed, text = parse(root), source_text(root)
    for name, body in labelled(parsed, "variable").items():
        assert "type" in body and unquote(body.get("description", "")), f"{root.name}: variable {name}"
        assert re.search(rf"\bvar\.{name}\b", text), f"{root.name}: variable {name} is never used"
    for name, body in labelled(parsed, "output").items():
        assert unquote(body.get("description", "")), f"{root.name}: output {name} has no description"
    assert parsed.get("terraform"), f"{root.name}: no terraform block with required_providers"


def test_module_calls_match_module_variables_and_outputs():
    for root in ROOTS:
        for call, body in labelled(parse(root), "module").items():
            target = (root / unquote(body["source"])).resolve()
            module = parse(target)
            variables = labelled(module, "variable")
            meta = ("source", "depends_on", "providers", "count", "for_each")
            inputs = {k for k in body if k not in meta and not k.startswith("__")}
            assert inputs <= set(variables), f"{call}: unknown inputs {inputs - set(variables)}"
            required = {name for name, v in variables.items() if "default" not in v}
            assert required <= inputs, f"{call}: missing required inputs {required - inputs}"
            outputs = set(labelled(module, "output"))
            used = set(re.findall(rf"module\.{call}\.(\w+)", source_text(root)))
            assert used <= outputs, f"module.{call}: no outputs {used - outputs}"


def test_node_pools_are_labelled_and_the_gpu_pool_is_tainted():
    modules = labelled(parse(TERRAFORM / "examples" / "dev"), "module")
    pools = {name: body for name, body in modules.items() if unquote(body["source"]).endswith("node-pool")}
    assert set(pools) == {"cpu_pool", "gpu_pool"}
    gpu = pools["gpu_pool"]
    assert unquote(gpu["ami_type"]) == "AL2023_x86_64_NVIDIA"
    taints = gpu["taints"]
    assert {(unquote(t["key"]), unquote(t["effect"])) for t in taints} == {("nvidia.com/gpu", "NO_SCHEDULE")}
    module = parse(TERRAFORM / "modules" / "node-pool")
    (group,) = resources(module, "aws_eks_node_group")
    local_labels = {k: v for block in module["locals"] for k, v in block.items()}["labels"]
    assert group["labels"] == "${local.labels}" and "lathe.dev/node-pool" in local_labels
    assert "taint" in str(group["dynamic"])
    # At zero nodes the cluster autoscaler knows a pool's labels and taints only from its ASG's tags.
    (tags,) = resources(module, "aws_autoscaling_group_tag")
    template = source_text(TERRAFORM / "modules" / "node-pool")
    assert "k8s.io/cluster-autoscaler/node-template/label/" in template
    assert "k8s.io/cluster-autoscaler/node-template/taint/" in template
    assert "local.node_template_tags" in tags["for_each"]
    # The chart's GPU selector and toleration match what the pool sets.
    values = manifests.load_values(manifests.CHART / "values.yaml")["inference"]
    assert values["gpuNodeSelector"] == {"lathe.dev/node-pool": "gpu"}
    assert values["gpuTolerations"][0]["key"] == "nvidia.com/gpu"


def test_artifacts_bucket_is_encrypted_versioned_and_private():
    parsed = parse(TERRAFORM / "modules" / "storage")
    (sse,) = resources(parsed, "aws_s3_bucket_server_side_encryption_configuration")
    assert unquote(sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]) == "aws:kms"
    (block,) = resources(parsed, "aws_s3_bucket_public_access_block")
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    assert all(block[flag] is True for flag in flags)
    (versioning,) = resources(parsed, "aws_s3_bucket_versioning")
    assert unquote(versioning["versioning_configuration"][0]["status"]) == "Enabled"
    assert "aws:SecureTransport" in source_text(TERRAFORM / "modules" / "storage")
    (key,) = resources(parsed, "aws_kms_key")
    assert key["enable_key_rotation"] is True


def test_cluster_is_private_and_encrypts_secrets():
    (cluster,) = resources(parse(TERRAFORM / "modules" / "cluster"), "aws_eks_cluster")
    assert cluster["vpc_config"][0]["endpoint_private_access"] is True
    assert cluster["encryption_config"][0]["resources"] == ["secrets"] or "secrets" in str(cluster["encryption_config"])
    assert "enableNetworkPolicy" in source_text(TERRAFORM / "modules" / "cluster")


def test_platform_installs_the_prerequisites_and_lathe():
    releases = resources(parse(TERRAFORM / "modules" / "platform"), "helm_release")
    charts = {unquote(r["chart"]) for r in releases}
    assert {"kuberay-operator", "kube-prometheus-stack", "prometheus-adapter", "${var.chart_path}"} <= charts
    assert all("version" in r for r in releases if unquote(r["chart"]) != "${var.chart_path}")


def test_workload_identity_trusts_one_service_account():
    text = source_text(TERRAFORM / "modules" / "workload-identity")
    assert "system:serviceaccount:${var.namespace}:${var.service_account}" in text
    assert '"s3:*"' not in text


ADDONS = TERRAFORM / "modules" / "addons"
PLATFORM = TERRAFORM / "modules" / "platform"
EXAMPLE = TERRAFORM / "examples" / "dev"
PRODUCTION = manifests.CHART / "ci" / "production-gpu-values.yaml"
# What the chart needs from the cluster: release or EKS add-on -> its module and switch.
NEEDED = {
    "nvidia-device-plugin": (ADDONS, "enable_nvidia_device_plugin"),  # pods request nvidia.com/gpu
    "metrics-server": (ADDONS, "enable_metrics_server"),  # the gateway's HPA on CPU
    "cluster-autoscaler": (ADDONS, "enable_cluster_autoscaler"),  # pools sized between min and max
    "ingress-nginx": (ADDONS, "enable_ingress_nginx"),  # networkPolicy.gatewayClientNamespaceSelector
    "keda": (ADDONS, "enable_keda"),  # inference.autoscaling.keda ScaledObjects
    "aws-ebs-csi-driver": (ADDONS, "enable_ebs_csi"),  # the gp3 claims
    "aws-efs-csi-driver": (ADDONS, "enable_efs"),  # the ReadWriteMany lathe-ray-shared claim
    "prometheus-adapter": (PLATFORM, "enable_prometheus_adapter"),  # the HPA fallback without KEDA
}


def installers(directory: Path) -> dict[str, dict]:
    """``chart or EKS add-on name -> its resource`` for the helm_release and aws_eks_addon resources."""
    parsed = unquote_all(parse(directory))
    found = {r["chart"]: r for r in resources(parsed, "helm_release")}
    return found | {r["addon_name"]: r for r in resources(parsed, "aws_eks_addon")}


def variables(directory: Path) -> dict[str, dict]:
    return unquote_all(labelled(parse(directory), "variable"))


def default(directory: Path, reference: str) -> Any:
    """The default of the variable a ``${var.x}`` reference names."""
    return variables(directory)[re.fullmatch(r"\$\{var\.(\w+)\}", reference).group(1)]["default"]


def call(name: str) -> dict:
    return unquote_all(labelled(parse(EXAMPLE), "module"))[name]


def test_the_dev_example_installs_every_add_on_the_chart_needs():
    modules = unquote_all(labelled(parse(EXAMPLE), "module")).values()
    calls = {b["source"].rsplit("/", 1)[-1]: b for b in modules}
    for name, (module, switch) in NEEDED.items():
        resource = installers(module).get(name)
        assert resource, f"{module.name} installs no {name}"
        assert re.search(rf"\bvar\.{switch}\b", resource["count"]), f"{name} is not behind var.{switch}"
        assert variables(module)[switch]["default"] is True, f"{switch} is off by default"
        assert calls[module.name].get(switch, True) is True, f"the dev example turns {name} off"
    # The chart's production values admit the ingress controller's namespace, which must be this one.
    selector = manifests.load_values(PRODUCTION)["gateway"]["ingress"]["controllerNamespaceSelector"]
    assert installers(ADDONS)["ingress-nginx"]["namespace"] == selector["kubernetes.io/metadata.name"]
    # The platform (and so Lathe) waits for the add-ons: KEDA's CRDs, the StorageClasses, the GPUs.
    assert "${module.addons}" in call("platform")["depends_on"]


def chart_needs(objects: list[dict]) -> set[str]:
    """The add-ons (NEEDED's names) that the rendered objects cannot run without."""
    needs = set()
    for obj in objects:
        kind, text = obj["kind"], str(obj)
        pods = [spec for _, spec in manifests.pod_specs(obj)]
        if any("nvidia.com/gpu" in str(c.get("resources")) for spec in pods for c in spec.get("containers", [])):
            needs.add("nvidia-device-plugin")
        if kind == "HorizontalPodAutoscaler":
            types = {m["type"] for m in obj["spec"]["metrics"]}
            needs |= {"metrics-server"} if "Resource" in types else set()  # CPU/memory: metrics.k8s.io
            needs |= {"prometheus-adapter"} if "Pods" in types else set()  # vLLM queues: custom.metrics.k8s.io
        if kind == "ScaledObject":
            needs.add("keda")
        classes = {"gp3": "aws-ebs-csi-driver", "efs": "aws-efs-csi-driver"}
        needs |= {need for name, need in classes.items() if f"'storageClassName': '{name}'" in text}
        if kind == "RayCluster" and "persistentVolumeClaim" in text:
            needs.add("aws-efs-csi-driver")  # ray.sharedStorageClaim: ReadWriteMany
        if kind == "NetworkPolicy" and "ingress-nginx" in text:
            needs.add("ingress-nginx")
    return needs


def test_the_table_of_needed_add_ons_is_what_the_rendered_chart_needs():
    values = manifests.load_values(PRODUCTION)
    needs = chart_needs(manifests.render(values))
    for keda in (True, False):  # the models autoscaled, with KEDA and with the HPA fallback
        autoscaled = {**values, "inference": {**values["inference"], "autoscaling": {"enabled": True, "keda": keda}}}
        needs |= chart_needs(manifests.render(autoscaled))
    # The autoscaler is the one need no object shows: the pools' min and max sizes rely on it.
    assert needs | {"cluster-autoscaler"} == set(NEEDED)


def test_add_on_versions_are_pinned_exactly():
    for directory in (ADDONS, PLATFORM):
        for name, resource in installers(directory).items():
            version = resource.get("version") or resource.get("addon_version")
            if name == "${var.chart_path}":
                continue
            pinned = default(directory, version)
            pattern = r"v\d+\.\d+\.\d+-eksbuild\.\d+" if "addon_name" in resource else r"\d+\.\d+\.\d+"
            assert re.fullmatch(pattern, pinned or ""), f"{name} is not pinned to one version: {pinned!r}"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", variables(ADDONS)["cluster_autoscaler_image_tag"]["default"])


def test_keda_and_gateway_api_match_the_vendored_crds():
    crds = (manifests.REPO / "deploy" / "crds").iterdir()
    vendored = dict(p.name.rsplit("-v", 1) for p in crds if p.is_dir())
    assert default(ADDONS, installers(ADDONS)["keda"]["version"]) == vendored["keda"]
    assert variables(ADDONS)["gateway_api_version"]["default"] == "v" + vendored["gateway-api"]
    assert variables(ADDONS)["enable_gateway_api_crds"]["default"] is False
    assert "${var.gateway_api_version}" in source_text(ADDONS)


def test_the_cluster_autoscaler_matches_the_clusters_kubernetes_minor():
    minor = variables(TERRAFORM / "modules" / "cluster")["kubernetes_version"]["default"]
    assert variables(ADDONS)["cluster_autoscaler_image_tag"]["default"].startswith(f"v{minor}.")


def test_the_device_plugin_tolerates_the_gpu_pools_taints_and_runs_on_its_nodes():
    assert call("addons")["gpu_taints"] == "${module.gpu_pool.taints}"
    assert labelled(parse(TERRAFORM / "modules" / "node-pool"), "output")["taints"]["value"] == "${var.taints}"
    parsed = unquote_all(parse(ADDONS))
    local = {k: v for block in parsed["locals"] for k, v in block.items()}
    assert local["gpu_tolerations"] == (
        '${[for t in var.gpu_taints : {key = t.key, operator = "Exists", effect = local.taint_effects[t.effect]}]}'
    )
    values = installers(ADDONS)["nvidia-device-plugin"]["values"][0]
    assert "tolerations = local.gpu_tolerations" in values and "affinity = null" in values
    for taint in call("gpu_pool")["taints"]:
        toleration = {"key": taint["key"], "operator": "Exists", "effect": local["taint_effects"][taint["effect"]]}
        kube_taint = {**taint, "effect": local["taint_effects"][taint["effect"]]}
        assert capacity._tolerates(toleration, kube_taint), taint
    selector = variables(ADDONS)["gpu_node_selector"]["default"]
    assert "nodeSelector = var.gpu_node_selector" in values
    assert selector.items() <= call("gpu_pool")["labels"].items()
    assert not selector.items() <= call("cpu_pool")["labels"].items()


def test_irsa_roles_trust_exactly_the_controllers_service_accounts():
    roles = unquote_all(labelled(parse(ADDONS), "module"))
    expected = {
        "ebs_csi_role": ["kube-system:ebs-csi-controller-sa"],
        "efs_csi_role": ["kube-system:efs-csi-controller-sa", "kube-system:efs-csi-node-sa"],
        "cluster_autoscaler_role": ["kube-system:cluster-autoscaler"],
    }
    for name, accounts in expected.items():
        assert roles[name]["source"] == "../irsa-role" and roles[name]["service_accounts"] == accounts
    assert "system:serviceaccount:${sa}" in source_text(TERRAFORM / "modules" / "irsa-role")
    assert roles["ebs_csi_role"]["policy_arns"][0].endswith(":iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy")
    assert roles["efs_csi_role"]["policy_arns"][0].endswith(":iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy")
    found = installers(ADDONS)
    assert found["aws-ebs-csi-driver"]["service_account_role_arn"] == "${module.ebs_csi_role[0].role_arn}"
    assert found["aws-efs-csi-driver"]["service_account_role_arn"] == "${module.efs_csi_role[0].role_arn}"
    autoscaler = found["cluster-autoscaler"]["values"][0]
    assert 'name = "cluster-autoscaler"' in autoscaler and "module.cluster_autoscaler_role[0].role_arn" in autoscaler
    assert "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}" in source_text(ADDONS)


def storage_classes_named(values: Any) -> set[str]:
    if isinstance(values, dict):
        named = {values["storageClass"]} if values.get("storageClass") else set()
        return named.union(*(storage_classes_named(v) for v in values.values()))
    return set().union(*(storage_classes_named(v) for v in values)) if isinstance(values, list) else set()


def test_storage_classes_and_the_shared_claim_are_what_the_chart_names():
    parsed = unquote_all(parse(ADDONS))
    classes = {r["metadata"][0]["name"]: r for r in resources(parsed, "kubernetes_storage_class_v1")}
    chart = manifests.load_values(manifests.CHART / "values.yaml")
    production = manifests.load_values(PRODUCTION)
    assert storage_classes_named(production) | storage_classes_named(chart) <= set(classes)
    # An empty storageClass in values.yaml means the cluster default: gp3.
    assert classes["gp3"]["metadata"][0]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert classes["gp3"]["storage_provisioner"] == "ebs.csi.aws.com" and classes["gp3"]["parameters"]["type"] == "gp3"
    assert classes["efs"]["storage_provisioner"] == "efs.csi.aws.com"
    (claim,) = resources(parsed, "kubernetes_persistent_volume_claim_v1")
    assert variables(ADDONS)["ray_shared_claim"]["default"] == production["ray"]["sharedStorageClaim"]
    assert claim["metadata"][0]["name"] == "${var.ray_shared_claim}"
    assert claim["spec"][0]["access_modes"] == ["ReadWriteMany"]
    assert claim["spec"][0]["storage_class_name"] == "${kubernetes_storage_class_v1.efs[0].metadata[0].name}"
    assert call("platform")["namespace"] == "${module.addons.lathe_namespace}"  # the claim's namespace


def test_efs_is_encrypted_and_reachable_by_nfs_from_the_nodes_only():
    parsed = unquote_all(parse(ADDONS))
    (efs,) = resources(parsed, "aws_efs_file_system")
    assert efs["encrypted"] is True and efs["kms_key_id"] == "${aws_kms_key.efs[0].arn}"
    (rule,) = resources(parsed, "aws_vpc_security_group_ingress_rule")
    assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (2049, 2049, "tcp")
    assert rule["referenced_security_group_id"] == "${var.node_security_group_id}"
    (targets,) = resources(parsed, "aws_efs_mount_target")
    assert "length(var.private_subnet_ids)" in targets["count"]
    assert call("addons")["node_security_group_id"] == "${module.cluster.node_security_group_id}"
    assert call("addons")["private_subnet_ids"] == "${module.network.private_subnet_ids}"


def test_terraform_fmt_is_clean():
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not installed (only this check needs it)")
    result = subprocess.run([binary, "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True)
    assert result.returncode == 0, f"terraform fmt would change: {result.stdout}"
