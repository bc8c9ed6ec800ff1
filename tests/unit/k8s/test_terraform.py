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

from tests.unit.k8s import manifests

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
            inputs = {k for k in body if k not in ("source", "depends_on", "providers") and not k.startswith("__")}
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
    (group,) = resources(parse(TERRAFORM / "modules" / "node-pool"), "aws_eks_node_group")
    assert "lathe.dev/node-pool" in str(group["labels"]) and "taint" in str(group["dynamic"])
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
    assert {"kuberay-operator", "kube-prometheus-stack", "${var.chart_path}"} <= charts
    assert all("version" in r for r in releases if unquote(r["chart"]) != "${var.chart_path}")


def test_workload_identity_trusts_one_service_account():
    text = source_text(TERRAFORM / "modules" / "workload-identity")
    assert "system:serviceaccount:${var.namespace}:${var.service_account}" in text
    assert '"s3:*"' not in text


def test_terraform_fmt_is_clean():
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not installed (only this check needs it)")
    result = subprocess.run([binary, "fmt", "-check", "-recursive", str(TERRAFORM)], capture_output=True, text=True)
    assert result.returncode == 0, f"terraform fmt would change: {result.stdout}"
