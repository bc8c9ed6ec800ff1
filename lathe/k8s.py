"""Lathe in a Kubernetes cluster: RayJobs from recipes, their logs, and the release's state.

    lathe train submit pipelines/recipes/pretrain-tiny.yaml --k8s [--namespace lathe]
    lathe train list --k8s | logs NAME --k8s [--follow]
    lathe cluster status [--namespace lathe] [--json]

The RayJob runs on the release's RayCluster (``<release>-ray``, found by its
``ray.io/cluster`` label) with the entry point ``ray job submit`` would use:
``python -m pipelines.<stage> --config pipelines/recipes/<file>``. The recipe must be one the
Ray image ships (pipelines/recipes/), as the job runs there, not here. The kubernetes client
reads the current kube context (or the in-cluster ServiceAccount).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lathe.errors import ConfigError, PlatformError

GROUP, VERSION = "ray.io", "v1"
TERMINAL = {"Complete", "Failed"}
PART_OF = "app.kubernetes.io/part-of=lathe"


def clients() -> tuple[Any, Any]:
    """``(CoreV1Api, CustomObjectsApi)`` for the current kube context, or in-cluster config."""
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except Exception:  # no kubeconfig: maybe we run in a pod
        try:
            config.load_incluster_config()
        except config.ConfigException as exc:
            raise PlatformError(f"no Kubernetes cluster configured ({exc})", hint="set KUBECONFIG") from None
    return client.CoreV1Api(), client.CustomObjectsApi()


def stage_of(recipe: Path) -> str:
    """The pipeline package that runs a recipe (its ``kind``; curation recipes have none)."""
    from lathe.recipes import entry_point_for

    return entry_point_for(recipe)


def shipped_path(recipe: Path) -> str:
    """The recipe's path inside the image: ``pipelines/recipes/<file>``."""
    parts = recipe.resolve().parts
    if len(parts) < 3 or parts[-3:-1] != ("pipelines", "recipes"):
        raise ConfigError(
            f"{recipe} is not under pipelines/recipes/: in-cluster jobs run recipes shipped in the Ray image",
            param="recipe",
        )
    return f"pipelines/recipes/{parts[-1]}"


def build_rayjob(
    recipe: Path, *, cluster: str, image: str, sets: list[str] = (), name: str | None = None, release: str | None = None
) -> dict:
    """The RayJob object for a recipe, submitted to ``cluster`` (a RayCluster's name).

    ``release`` is the Helm release owning the cluster (its ``app.kubernetes.io/instance`` label): the
    submitter pod carries it so the chart's NetworkPolicies select it, whatever the release is called.
    """
    entrypoint = f"python -m {stage_of(recipe)} --config {shipped_path(recipe)}"
    for pair in sets:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: write FIELD=VALUE", param="set")
        entrypoint += f" --set {pair}"
    stem = _slug(recipe.stem)
    name = name or f"lathe-{stem}-{secrets.token_hex(3)}"
    return rayjob(entrypoint, {"lathe.dev/recipe": stem}, cluster=cluster, image=image, name=name, release=release)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def rayjob(
    entrypoint: str,
    extra_labels: dict[str, str],
    *,
    cluster: str,
    image: str,
    name: str,
    release: str | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """A RayJob running ``entrypoint`` on the RayCluster ``cluster``, with a hardened submitter pod."""
    labels = {"app.kubernetes.io/part-of": "lathe", "app.kubernetes.io/managed-by": "lathe-cli",
              "app.kubernetes.io/component": "ray", **extra_labels}  # fmt: skip
    submitter_labels = {**labels, "app.kubernetes.io/component": "ray-submitter"}
    fullname = cluster.removesuffix("-ray")  # the chart's resource prefix: <fullname>-ray, <fullname>-mlflow
    release = release or fullname
    mlflow = f"http://{fullname}-mlflow:5000"
    hardened = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    env_vars = {"MLFLOW_TRACKING_URI": mlflow, "LATHE_MLFLOW_TRACKING_URI": mlflow, "LATHE_HOME": "/app/.lathe"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "entrypoint": entrypoint,
            "clusterSelector": {"ray.io/cluster": cluster},
            "submissionMode": "K8sJobMode",
            "runtimeEnvYAML": yaml.safe_dump({"env_vars": {**env_vars, **(env or {})}}),
            "submitterPodTemplate": {
                "metadata": {"labels": {**submitter_labels, "app.kubernetes.io/instance": release}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": cluster,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "fsGroup": 100,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "lathe-ray-submitter",
                            "image": image,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                            "securityContext": hardened,
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def head_image(cluster_obj: dict) -> str:
    """The image of a RayCluster's head (the submitter runs the same one)."""
    return cluster_obj["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


def read_cluster(custom: Any, namespace: str, cluster: str) -> dict:
    """The RayCluster object, or a ConfigError naming the missing cluster."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rayclusters", cluster)
    except ApiException as exc:
        if exc.status == 404:
            raise ConfigError(
                f"no RayCluster {cluster!r} in namespace {namespace!r}",
                hint="install the chart with ray.enabled=true, or pass --namespace",
            ) from None
        raise PlatformError(f"cannot read RayCluster {cluster}: {exc.reason}") from None
    return obj


def submit(custom: Any, namespace: str, recipe: Path, *, cluster: str, sets: list[str] = ()) -> dict:
    """Create the RayJob for a recipe; the created object."""
    obj = read_cluster(custom, namespace, cluster)
    image = head_image(obj)
    release = obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/instance")
    body = build_rayjob(recipe, cluster=cluster, image=image, sets=sets, release=release)
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "rayjobs", body)


def rayjob_rows(custom: Any, namespace: str) -> list[dict]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "rayjobs").get("items", [])
    rows = []
    for item in items:
        status = item.get("status", {})
        rows.append({
            "name": item["metadata"]["name"],
            "recipe": item["metadata"].get("labels", {}).get("lathe.dev/recipe", ""),
            "deployment_status": status.get("jobDeploymentStatus", "New"),
            "job_status": status.get("jobStatus", ""),
            "started": status.get("startTime", ""),
            "ended": status.get("endTime", ""),
            "message": status.get("message", ""),
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["started"] or "~", reverse=True)


def raycluster_rows(custom: Any, namespace: str) -> list[dict]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "rayclusters").get("items", [])
    return [
        {
            "name": item["metadata"]["name"],
            "state": item.get("status", {}).get("state", "pending"),
            "ready_workers": item.get("status", {}).get("readyWorkerReplicas", 0),
            "desired_workers": item.get("status", {}).get("desiredWorkerReplicas", 0),
        }
        for item in items
    ]


def pod_rows(core: Any, namespace: str) -> list[dict]:
    rows = []
    for pod in core.list_namespaced_pod(namespace, label_selector=PART_OF).items:
        statuses = pod.status.container_statuses or []
        rows.append({
            "name": pod.metadata.name,
            "component": (pod.metadata.labels or {}).get("app.kubernetes.io/component", ""),
            "phase": pod.status.phase,
            "ready": f"{sum(1 for s in statuses if s.ready)}/{len(statuses)}",
            "restarts": sum(s.restart_count for s in statuses),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["component"], r["name"]))


def status(core: Any, custom: Any, namespace: str) -> dict:
    """Pods, RayClusters and RayJobs of the release, as plain rows."""
    return {
        "namespace": namespace,
        "pods": pod_rows(core, namespace),
        "rayclusters": raycluster_rows(custom, namespace),
        "rayjobs": rayjob_rows(custom, namespace),
    }


def submitter_pod(core: Any, namespace: str, job: str, wait_s: float = 300.0) -> str:
    """The pod of the RayJob's submitter (the K8s Job KubeRay names after the RayJob)."""
    deadline = time.monotonic() + wait_s
    while True:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        started = [p for p in pods if p.status.phase in ("Running", "Succeeded", "Failed")]
        if started:
            return sorted(started, key=lambda p: p.metadata.creation_timestamp)[-1].metadata.name
        if time.monotonic() > deadline:
            raise PlatformError(f"RayJob {job}: no submitter pod started in {wait_s:.0f} s", hint="kubectl describe")
        time.sleep(2)


def log_lines(core: Any, namespace: str, job: str, follow: bool) -> Iterator[str]:
    """The job's output, as the submitter pod streams it from Ray."""
    pod = submitter_pod(core, namespace, job)
    if not follow:
        yield from core.read_namespaced_pod_log(pod, namespace).splitlines()
        return
    stream = core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False)
    for raw in stream.stream():
        yield from raw.decode(errors="replace").splitlines()


def wait_for_end(custom: Any, namespace: str, job: str) -> dict:
    """Poll the RayJob until it completes or fails; its status."""
    while True:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rayjobs", job)
        state = obj.get("status", {})
        if state.get("jobDeploymentStatus") in TERMINAL:
            return state
        time.sleep(2)
