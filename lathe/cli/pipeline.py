"""``lathe pipeline …``: run a pipeline file's stages in order, on the local Ray head or as one RayJob.

    lathe pipeline run pipelines/demo.yaml [--set STAGE.FIELD=VALUE] [--from STAGE] [--to STAGE] [--json]
    lathe pipeline run pipelines/demo.yaml --k8s [--namespace lathe] [--dry-run]
    lathe pipeline status [JOB] [--k8s] [--json]
    lathe pipeline logs JOB [--stage STAGE] [--follow] [--k8s]

Both ways run one command, ``python -m pipelines.flow run FILE …`` (the driver): as a
Ray job on the head of ``lathe up`` (or ``--address``), or as a RayJob on the release's
RayCluster. The driver checks the whole pipeline first (references, recipes, storage,
GPUs, recorded outputs for ``--from``) and refuses it in one line before any stage runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lathe.cli.output import console, err_console, print_json, settings
from lathe.errors import ConfigError, PlatformError

app = typer.Typer(help="Run pipeline files: curation to a gated model, locally or on KubeRay.", no_args_is_help=True)
K8S_HELP = "Use a KubeRay RayJob in the current kube context instead of the local Ray head."


def driver_argv(file: Path, sets: list[str], start: str | None, stop: str | None, run_id: str | None) -> list[str]:
    """The driver's command line: the same for a local run and for the RayJob (after the interpreter)."""
    argv = [sys.executable, "-m", "pipelines.flow", "run", _shown(file)]
    for pair in sets:
        argv += ["--set", pair]
    for flag, value in (("--from", start), ("--to", stop), ("--run-id", run_id)):
        if value:
            argv += [flag, value]
    return argv


def _shown(file: Path) -> str:
    """The file as the driver opens it: relative to the working directory (the image's /app on a cluster)."""
    try:
        return str(file.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file.resolve())


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="The pipeline file (YAML).", exists=True, dir_okay=False),
    sets: list[str] = typer.Option([], "--set", help="Override a value: STAGE.FIELD=VALUE or params.NAME=VALUE."),
    start: str | None = typer.Option(None, "--from", help="Start here, reusing the outputs recorded before it."),
    stop: str | None = typer.Option(None, "--to", help="Stop after this stage."),
    run_id: str | None = typer.Option(None, "--run-id", help="Record into this run (default: new; --from: latest)."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the pipeline to its end, or only queue it."),
    json_output: bool = typer.Option(False, "--json", help="Print the run's record as JSON (lines to stderr)."),
    k8s: bool = typer.Option(False, "--k8s", help=K8S_HELP),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
    ray_cluster: str = typer.Option("lathe-ray", "--ray-cluster", help="RayCluster the RayJob runs on (with --k8s)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --k8s: print the RayJob as YAML and contact nothing."),
    image: str | None = typer.Option(None, "--image", help="With --dry-run: the Ray image (default: the release's)."),
) -> None:
    """Run a pipeline: every stage in order, one line each with its MLflow run; a failed stage stops it."""
    argv = driver_argv(file, sets, start, stop, run_id)
    if dry_run and not k8s:
        raise ConfigError("--dry-run prints the RayJob of --k8s; add --k8s", param="dry-run")
    if k8s:
        from lathe.cli import pipeline_k8s

        return pipeline_k8s.run(argv, file, namespace, ray_cluster, dry_run=dry_run, image=image,
                                wait=wait, json_output=json_output)  # fmt: skip
    _run_local(argv, address=address, wait=wait, json_output=json_output)


def _run_local(argv: list[str], *, address: str | None, wait: bool, json_output: bool) -> None:
    from lathe.cli.pipeline_view import PipelineView
    from lathe.jobs import follow, submit

    s = settings()
    env = {"MLFLOW_TRACKING_URI": s.mlflow.uri, "LATHE_HOME": str(s.home.resolve())}
    job_id = submit(s, argv, address=address, env=env, cwd=None if address else str(Path.cwd()),
                    metadata={"lathe_pipeline": argv[4]})  # fmt: skip
    if not wait:
        if json_output:
            print_json({"job_id": job_id, "status": "PENDING", "command": argv[1:]})
        else:
            console.print(f"submitted pipeline job [bold]{job_id}[/]; follow it: lathe pipeline status {job_id}")
        return
    log = s.log_dir / "pipelines" / f"{job_id}.log"
    view = PipelineView(err_console if json_output else console, log, passthrough=json_output)
    try:
        with view:
            follow(s, job_id, address=address, on_line=view.line)
    except PlatformError:
        _raise_failure(view, job_id)
    record = {"job_id": job_id, "command": argv[1:], **((view.end or {}).get("state") or {})}
    if json_output:
        print_json(record)
    else:
        console.print(f"pipeline run [bold]{record.get('run')}[/] succeeded; outputs in {view.run_folder}")
        console.print(f"Ray job {job_id}; its log: {log}", highlight=False)


def _raise_failure(view, job: str) -> None:
    if view.preflight_error:
        raise ConfigError(view.preflight_error) from None
    if view.failed:
        where = view.failed.get("log")
        raise PlatformError(
            f"stage {view.failed['stage']} {view.failed.get('error', 'failed')}",
            hint=(f"its log: {where}; " if where else "") + f"the pipeline's: {view.log}",
        ) from None
    raise PlatformError(f"pipeline job {job} failed", hint=f"its log: {view.log}") from None


@app.command("status")
def status(
    job: str | None = typer.Argument(None, help="Ray job id (RayJob name with --k8s); default: the latest."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
    k8s: bool = typer.Option(False, "--k8s", help=K8S_HELP),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
) -> None:
    """Where a pipeline stands: each stage's status, time and MLflow run."""
    from lathe.pipeline_events import summarize

    if k8s:
        from lathe.cli import pipeline_k8s

        job, job_status, lines = pipeline_k8s.job_lines(job, namespace)
    else:
        job, job_status, lines = _local_job_lines(job, address)
    summary = {"job": job, "job_status": job_status, **summarize(lines)}
    if json_output:
        print_json(summary)
        return
    _print_status(summary)


def _local_job_lines(job: str | None, address: str | None) -> tuple[str, str, list[str]]:
    from lathe.jobs import jobs_client

    client = jobs_client(settings(), address)
    if job is None:
        jobs = [j for j in client.list_jobs() if "lathe_pipeline" in (j.metadata or {})]
        if not jobs:
            raise ConfigError("no pipeline has run on this Ray cluster; start one with `lathe pipeline run FILE`")
        job = max(jobs, key=lambda j: j.start_time or 0).submission_id
    try:
        info = client.get_job_info(job)
        text = client.get_job_logs(job)
    except RuntimeError as exc:
        raise ConfigError(f"no Ray job {job!r} ({str(exc).splitlines()[0][:200]})") from None
    return job, str(getattr(info.status, "value", info.status)), text.splitlines()


def _print_status(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"pipeline {summary.get('pipeline')} — run {summary.get('run')} ({summary['status']})",
                  title_justify="left")  # fmt: skip
    for column in ("stage", "kind", "status", "seconds", "MLflow run"):
        table.add_column(column)
    for stage in summary["stages"]:
        seconds = f"{stage['seconds']:.0f}" if stage.get("seconds") is not None else ""
        table.add_row(stage["name"], stage.get("kind", ""), stage.get("status", ""), seconds, stage.get("run_id") or "")
    console.print(table)
    console.print(f"job {summary['job']}: {summary['job_status']}")
    if summary.get("error"):
        console.print(f"[bold red]error:[/] {summary['error']}", highlight=False)


@app.command("logs")
def logs(
    job: str = typer.Argument(..., help="The pipeline's job (Ray job id, or RayJob name with --k8s)."),
    stage: str | None = typer.Option(None, "--stage", help="Only what this stage printed."),
    follow_logs: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the pipeline ends."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    k8s: bool = typer.Option(False, "--k8s", help=K8S_HELP),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
) -> None:
    """Print a pipeline's log: every stage's output, in order (or one stage's with --stage)."""
    from lathe.pipeline_events import stage_lines

    if follow_logs and stage is None:
        if k8s:
            from lathe import k8s as kube

            core, _ = kube.clients()
            for line in kube.log_lines(core, namespace, job, follow=True):
                sys.stdout.write(line + "\n")
            return
        from lathe.jobs import follow

        follow(settings(), job, address=address, on_line=lambda line: sys.stdout.write(line + "\n"))
        return
    if k8s:
        from lathe.cli import pipeline_k8s

        _, _, lines = pipeline_k8s.job_lines(job, namespace)
    else:
        _, _, lines = _local_job_lines(job, address)
    for line in stage_lines(lines, stage) if stage else lines:
        sys.stdout.write(line + "\n")
