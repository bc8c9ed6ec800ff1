"""``lathe cluster …``: Lathe as deployed by the Helm chart, seen through the Kubernetes API.

    lathe cluster status [--namespace lathe] [--json]

Lists the release's pods (phase, readiness, restarts), its RayClusters and its RayJobs
with their states. Exits 1 when a pod is not running or not ready.
"""

from __future__ import annotations

import typer

from lathe.cli.output import console, print_json

app = typer.Typer(help="Lathe in a Kubernetes cluster (installed with the Helm chart).", no_args_is_help=True)


@app.command("status")
def status(
    namespace: str = typer.Option("lathe", "--namespace", "-n", help="Namespace of the Lathe release."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Pods, RayClusters and RayJobs of the release, with their states."""
    from lathe import k8s

    core, custom = k8s.clients()
    report = k8s.status(core, custom, namespace)
    unhealthy = [p for p in report["pods"] if p["phase"] != "Succeeded" and (p["phase"] != "Running" or _not_ready(p))]
    if json_output:
        print_json(report)
    else:
        _print(report)
    if unhealthy:
        raise typer.Exit(1)


def _not_ready(pod: dict) -> bool:
    ready, total = pod["ready"].split("/")
    return ready != total


def _print(report: dict) -> None:
    from rich.table import Table

    pods = Table(title=f"Lathe pods — namespace {report['namespace']}", title_justify="left")
    for column in ("component", "pod", "phase", "ready", "restarts"):
        pods.add_column(column)
    for p in report["pods"]:
        colour = "green" if p["phase"] == "Running" and not _not_ready(p) else "yellow"
        pods.add_row(p["component"], p["name"], f"[{colour}]{p['phase']}[/]", p["ready"], str(p["restarts"]))
    console.print(pods)
    clusters = Table(title="RayClusters", title_justify="left")
    for column in ("name", "state", "workers ready/desired"):
        clusters.add_column(column)
    for c in report["rayclusters"]:
        clusters.add_row(c["name"], c["state"], f"{c['ready_workers']}/{c['desired_workers']}")
    console.print(clusters)
    jobs = Table(title="RayJobs", title_justify="left")
    for column in ("name", "recipe", "deployment", "job", "started", "message"):
        jobs.add_column(column)
    for j in report["rayjobs"]:
        jobs.add_row(j["name"], j["recipe"], j["deployment_status"], j["job_status"], j["started"], j["message"][:60])
    console.print(jobs)
