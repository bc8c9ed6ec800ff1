"""A pipeline as one RayJob: its driver runs the stages in order on the release's KubeRay cluster.

    lathe pipeline run pipelines/demo.yaml --k8s [--dry-run]

The entry point is the command a local run executes (``python -m pipelines.flow run
FILE …``), so the two cannot drift; the pipeline file and the recipes it names must be
ones the Ray image ships (under ``pipelines/``). The RayJob's runtime env marks the run
as on a cluster, so the driver refuses storage that only one pod can see.

With a Kueue queue (the chart's ``ray.kueue.queueName``, which annotates the RayCluster
with ``lathe.dev/kueue-queue``), the RayJob cannot use the running cluster: Kueue admits
only a RayJob that brings its own cluster, without in-tree autoscaling, and deletes it
when the job ends. The job then carries a copy of the release's RayCluster spec with
every worker group fixed at its ``replicas`` and the queue's label; Kueue decides when
it starts (gang admission against the queue's quota).
"""

from __future__ import annotations

import copy
import secrets
import shlex
from pathlib import Path

from lathe.errors import ConfigError
from lathe.k8s import _slug, rayjob

QUEUE_ANNOTATION = "lathe.dev/kueue-queue"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CLUSTER_SIZE_ENV = ("LATHE_RAY_AUTOSCALING", "LATHE_RAY_MAX_GPUS")
DEFAULT_IMAGE = "ghcr.io/lathe-llmops/lathe-ray"


def default_image() -> str:
    """The Ray image of this Lathe version (what the chart deploys by default)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{DEFAULT_IMAGE}:{version('lathe')}"
    except PackageNotFoundError:
        return f"{DEFAULT_IMAGE}:latest"


def shipped_pipeline(path: Path) -> str:
    """The pipeline file's path inside the image: ``pipelines/…``."""
    parts = path.resolve().parts
    if "pipelines" not in parts[:-1]:
        raise ConfigError(
            f"{path} is not under pipelines/: in-cluster pipelines run files shipped in the Ray image", param="file"
        )
    index = len(parts) - 1 - parts[::-1].index("pipelines")
    return "/".join(parts[index:])


def entrypoint(argv: list[str]) -> str:
    """The driver command as the RayJob runs it: the local command with the image's ``python``."""
    return shlex.join(["python", *argv[1:]])


def pipeline_rayjob(
    argv: list[str], pipeline_name: str, *, cluster: str, image: str, release: str | None, cluster_obj: dict | None
) -> dict:
    """The RayJob for a driver command ``argv`` (``[python, -m, pipelines.flow, run, FILE, …]``)."""
    name = f"lathe-pipeline-{_slug(pipeline_name)[:30]}-{secrets.token_hex(3)}"
    job = rayjob(
        entrypoint(argv),
        {"lathe.dev/pipeline": _slug(pipeline_name)},
        cluster=cluster,
        image=image,
        name=name,
        release=release,
        env={"LATHE_PIPELINE_ON_CLUSTER": "1"},
    )
    queue = ((cluster_obj or {}).get("metadata", {}).get("annotations") or {}).get(QUEUE_ANNOTATION)
    if queue:
        kueue_managed(job, cluster_obj, queue)
    return job


def kueue_managed(job: dict, cluster_obj: dict, queue: str) -> None:
    """Turn ``job`` into one Kueue admits: its own copy of the cluster, fixed size, queued and suspended."""
    spec = copy.deepcopy(cluster_obj["spec"])
    spec["enableInTreeAutoscaling"] = False
    spec.pop("autoscalerOptions", None)
    gpus = 0
    for group in spec.get("workerGroupSpecs", []):
        replicas = int(group.get("replicas", 0) or 0)
        group.update(replicas=replicas, minReplicas=replicas, maxReplicas=replicas)
        limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        gpus += replicas * int(limits.get("nvidia.com/gpu", 0) or 0)
    pods = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec.get("workerGroupSpecs", []))]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            env = [e for e in container.get("env", []) if e["name"] not in CLUSTER_SIZE_ENV]
            container["env"] = [*env, {"name": "LATHE_RAY_MAX_GPUS", "value": str(gpus)}]
    job["metadata"]["labels"][QUEUE_LABEL] = queue
    del job["spec"]["clusterSelector"]
    job["spec"].update(rayClusterSpec=spec, shutdownAfterJobFinishes=True, suspend=True)
