"""Render the chart with Helm's own engine and validate what it renders, offline.

Core kinds validate against the Kubernetes 1.31 schemas that ``kubernetes-validate``
ships (strict: an unknown field is an error, as the API server's strict decoding makes
it). Custom resources validate against the CRDs' ``openAPIV3Schema`` vendored under
``deploy/crds/<project>-v<version>/`` at exactly the versions Terraform installs (see each folder's
SOURCE.md), made strict the same way: ``x-kubernetes-*`` keys dropped, ``nullable`` turned into a
``null`` type, and unknown properties forbidden on objects that declare ``properties``.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "helm" / "lathe"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES_VERSION = "1.31.0"
RELEASE, NAMESPACE = "lathe", "lathe"


# libyaml's loader when PyYAML has it (five times faster on the vendored CRDs), the same safe subset.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=SafeLoader))


def load_values(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=SafeLoader) or {}


@functools.lru_cache(maxsize=1)
def chart():
    import helm_python

    helm_python.disable_logging()  # it logs the files/ symlinks at INFO on every load
    return helm_python.Chart.load(str(CHART))


def render_files(values: dict[str, Any] | None = None, release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    return chart().render(values or {}, name=release, namespace=NAMESPACE)


def render(values: dict[str, Any] | None = None, release: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders for these values (NOTES.txt left out)."""
    objects = []
    for path, text in sorted(render_files(values, release).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"].setdefault("lathe.test/template", path)
                objects.append(doc)
    return objects


def template_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["annotations"]["lathe.test/template"]


def strip_test_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(obj)
    annotations = clean.get("metadata", {}).get("annotations")
    if annotations is not None:
        annotations.pop("lathe.test/template", None)
        if not annotations:
            del clean["metadata"]["annotations"]
    return clean


def write_rendered(out_dir: Path, values_files: list[Path] = CI_VALUES) -> dict[str, list[Path]]:
    """Render each values file into ``out_dir/<values set>/<template>.yaml``, as Helm renders it.

    For scanners that read manifests from disk (checkov): one folder per values set and one file
    per template, so a finding names both; the tests' bookkeeping annotation is left out.
    Returns ``values set -> files written``.
    """
    written: dict[str, list[Path]] = {}
    for values_file in values_files:
        name = values_file.name.removesuffix("-values.yaml")
        by_template: dict[str, list[dict[str, Any]]] = {}
        for obj in render(load_values(values_file)):
            by_template.setdefault(Path(template_of(obj)).name, []).append(strip_test_annotation(obj))
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.yaml"):
            stale.unlink()
        for template, objects in sorted(by_template.items()):
            (folder / template).write_text(yaml.safe_dump_all(objects, sort_keys=False))
        written[name] = sorted(folder.glob("*.yaml"))
    return written


CRDS = REPO / "deploy" / "crds"


def pinned_crd_versions() -> dict[str, str]:
    """``project -> version`` of every vendored CRD folder (``deploy/crds/kuberay-v1.6.2`` -> kuberay: 1.6.2)."""
    found = {}
    for folder in sorted(p for p in CRDS.iterdir() if p.is_dir()):
        match = re.fullmatch(r"(?P<project>[a-z-]+)-v(?P<version>\d+\.\d+\.\d+)", folder.name)
        assert match, f"{folder}: name CRD folders <project>-v<X.Y.Z>"
        found[match["project"]] = match["version"]
    return found


def _strict(schema: Any) -> Any:
    """A CRD's OpenAPI schema as strict JSON Schema (see the module docstring)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


@functools.lru_cache(maxsize=4)
def crd_validators(folder: Path = CRDS) -> dict[tuple[str, str], Any]:
    """``(apiVersion, kind) -> validator`` for every version of every CRD under ``folder``."""
    import jsonschema

    validators = {}
    for path in sorted(folder.glob("**/*.yaml")):
        for crd in load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                # metadata is checked by the API server, not the CRD: any ObjectMeta passes here.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft202012Validator(schema)
    return validators


def validate(obj: dict[str, Any]) -> list[str]:
    """Problems with one rendered object; empty when it is valid for Kubernetes 1.31."""
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    obj = strip_test_annotation(obj)
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
    if "." in key[0].split("/")[0] and key in crd_validators():
        return [
            f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validators()[key].iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except ValidationError as exc:
        return [f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    except SchemaNotFoundError as exc:
        # An unknown kind is a failure, never a pass: the API server would refuse it too.
        return [f"{name}: {exc.message}"]
    return []


def containers(pod_spec: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    found = list(pod_spec.get("containers", []))
    return found + list(pod_spec.get("initContainers", [])) if init else found


def pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(where, pod spec)`` of every pod an object makes (workloads and KubeRay objects)."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [("template", spec["template"]["spec"])]
    if kind == "RayCluster":
        specs = [("head", spec["headGroupSpec"]["template"]["spec"])]
        specs += [(g["groupName"], g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
        return specs
    if kind == "RayJob" and "submitterPodTemplate" in spec:
        return [("submitter", spec["submitterPodTemplate"]["spec"])]
    return []
