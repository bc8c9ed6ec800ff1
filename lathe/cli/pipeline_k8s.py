"""The ``--k8s`` branches of ``lathe pipeline run | status | logs``: one RayJob per pipeline run.

The Kubernetes objects are built in ``lathe.k8s_pipeline``; this module checks, creates,
follows and prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from lathe.cli.output import console, err_console, print_json, settings
from lathe.errors import ConfigError, PlatformError


def offline_check(argv: list[str]) -> None:
    """The checks that need neither the cluster nor its storage: the file, references, recipes."""
    check = subprocess.run([*argv, "--check", "--offline"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["the pipeline check failed"])[-1]
        raise ConfigError(last.removeprefix("pipeline: "))


def run(
    argv: list[str],
    file: Path,
    namespace: str,
    cluster: str,
    *,
    dry_run: bool,
    image: str | None,
    wait: bool,
    json_output: bool,
) -> None:
    from lathe.k8s_pipeline import default_image, pipeline_rayjob, shipped_pipeline

    offline_check(argv)
    argv = [*argv[:4], shipped_pipeline(file), *argv[5:]]
    name = _pipeline_name(file)
    if dry_run:
        job = pipeline_rayjob(argv, name, cluster=cluster, image=image or default_image(),
                              release=None, cluster_obj=None)  # fmt: skip
        sys.stdout.write(yaml.safe_dump(job, sort_keys=False))
        return
    from lathe import k8s

    core, custom = k8s.clients()
    obj = k8s.read_cluster(custom, namespace, cluster)
    release = obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/instance")
    body = pipeline_rayjob(argv, name, cluster=cluster, image=image or k8s.head_image(obj), release=release,
                           cluster_obj=obj)  # fmt: skip
    created = custom.create_namespaced_custom_object(k8s.GROUP, k8s.VERSION, namespace, "rayjobs", body)
    job = created["metadata"]["name"]
    if not wait:
        if json_output:
            print_json(
                {"job_id": job, "namespace": namespace, "status": "New", "entrypoint": body["spec"]["entrypoint"]}
            )
        else:
            console.print(f"created RayJob [bold]{job}[/] in {namespace}; follow it: lathe pipeline status {job} --k8s")
        return
    _follow(core, custom, namespace, job, json_output)


def _follow(core, custom, namespace: str, job: str, json_output: bool) -> None:
    from lathe import k8s
    from lathe.cli.pipeline import _raise_failure
    from lathe.cli.pipeline_view import PipelineView

    log = settings().log_dir / "pipelines" / f"{job}.log"
    view = PipelineView(err_console if json_output else console, log, passthrough=json_output)
    with view:
        for line in k8s.log_lines(core, namespace, job, follow=True):
            view.line(line)
    state = k8s.wait_for_end(custom, namespace, job)
    if state.get("jobDeploymentStatus") != "Complete" or state.get("jobStatus") != "SUCCEEDED":
        _raise_failure(view, job)
    record = {"job_id": job, "namespace": namespace, **((view.end or {}).get("state") or {})}
    if json_output:
        print_json(record)
    else:
        console.print(f"pipeline run [bold]{record.get('run')}[/] succeeded; outputs in {view.run_folder}")
        console.print(f"RayJob {job}; its log: {log}", highlight=False)


def _pipeline_name(file: Path) -> str:
    data = yaml.safe_load(file.read_text()) or {}
    return str(data.get("name") or file.stem) if isinstance(data, dict) else file.stem


def job_lines(job: str | None, namespace: str) -> tuple[str, str, list[str]]:
    """The RayJob (default: the newest pipeline one), its status and its driver's log lines."""
    from lathe import k8s

    core, custom = k8s.clients()
    if job is None:
        items = custom.list_namespaced_custom_object(
            k8s.GROUP, k8s.VERSION, namespace, "rayjobs", label_selector="lathe.dev/pipeline"
        ).get("items", [])
        if not items:
            raise ConfigError(f"no pipeline RayJob in namespace {namespace!r}")
        job = max(items, key=lambda i: i["metadata"].get("creationTimestamp", ""))["metadata"]["name"]
    try:
        obj = custom.get_namespaced_custom_object(k8s.GROUP, k8s.VERSION, namespace, "rayjobs", job)
    except Exception as exc:
        raise PlatformError(f"cannot read RayJob {job}: {getattr(exc, 'reason', exc)}") from None
    state = obj.get("status", {})
    status = state.get("jobStatus") or state.get("jobDeploymentStatus") or "New"
    return job, status, list(k8s.log_lines(core, namespace, job, follow=False))
