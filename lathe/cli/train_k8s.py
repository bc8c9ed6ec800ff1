"""The ``--k8s`` branches of ``lathe train submit | list | logs``: RayJobs instead of Ray Jobs API calls.

    lathe train submit pipelines/recipes/tokenizer.yaml --k8s --namespace lathe [--no-wait]
    lathe train list --k8s
    lathe train logs lathe-tokenizer-1a2b3c --k8s [--follow]

The Kubernetes work itself lives in ``lathe.k8s``; this module only prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lathe.cli.output import console, print_json
from lathe.errors import PlatformError


def submit(recipe: Path, sets: list[str], namespace: str, cluster: str, wait: bool, json_output: bool) -> None:
    from lathe import k8s

    core, custom = k8s.clients()
    job = k8s.submit(custom, namespace, recipe, cluster=cluster, sets=sets)
    name = job["metadata"]["name"]
    if not wait:
        if json_output:
            print_json(
                {"job_id": name, "namespace": namespace, "status": "New", "entrypoint": job["spec"]["entrypoint"]}
            )
        else:
            console.print(f"created RayJob [bold]{name}[/] in {namespace}; follow it: lathe train logs {name} --k8s -f")
        return
    for line in k8s.log_lines(core, namespace, name, follow=True):
        (sys.stderr if json_output else sys.stdout).write(line + "\n")
    state = k8s.wait_for_end(custom, namespace, name)
    result = {"job_id": name, "namespace": namespace, "status": state.get("jobDeploymentStatus"),
              "job_status": state.get("jobStatus"), "message": state.get("message", "")}  # fmt: skip
    if json_output:
        print_json(result)
    if result["status"] != "Complete":
        raise PlatformError(f"RayJob {name} {result['status']}: {result['message'][:300]}")
    if not json_output:
        console.print(f"RayJob [bold]{name}[/] {result['job_status']}")


def list_jobs(namespace: str, json_output: bool) -> None:
    from rich.table import Table

    from lathe import k8s

    _, custom = k8s.clients()
    rows = k8s.rayjob_rows(custom, namespace)
    if json_output:
        print_json(rows)
        return
    table = Table(title=f"RayJobs — namespace {namespace}", title_justify="left")
    for column in ("job", "recipe", "deployment", "job status", "started"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["recipe"], row["deployment_status"], row["job_status"], row["started"])
    console.print(table)


def logs(name: str, namespace: str, follow: bool) -> None:
    from lathe import k8s

    core, _ = k8s.clients()
    for line in k8s.log_lines(core, namespace, name, follow=follow):
        sys.stdout.write(line + "\n")
