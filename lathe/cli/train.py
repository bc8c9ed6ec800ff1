"""``lathe train …``: submit training recipes as Ray jobs and follow them.

    lathe train submit pipelines/recipes/pretrain-tiny.yaml [--set training.max_steps=50] [--json]
    lathe train submit RECIPE --address http://ray-head:8265 --no-wait
    lathe train submit pipelines/recipes/pretrain-tiny.yaml --with-deps   # trains the tokenizer first if missing
    lathe train list | logs JOB_ID [--follow]

A recipe's ``kind`` picks the entry point (``python -m pipelines.<stage>``). The job
goes through the Ray Jobs API (the head of ``lathe up``, or ``--address``); its logs
stream here with a progress bar drawn from the loop's progress lines, and the end
prints the MLflow run and the registered model version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

from lathe.cli.output import console, err_console, print_json, settings
from lathe.errors import ConfigError, LatheError, PlatformError
from lathe.jobs import RESULT_PREFIX, StageResult, parse_progress
from lathe.recipes import TRAINING_ENTRY_POINTS as ENTRY_POINTS
from lathe.recipes import entry_point_for, plan_dependencies, read_recipe
from lathe.settings import LatheSettings

app = typer.Typer(
    help="Train tokenizers and models with Ray jobs (pretrain, SFT, DPO, evaluate).", no_args_is_help=True
)

# Ray Train's own chatter; everything else in the job's log is shown.
NOISE = (
    "Reporting training result",
    "PlacementGroupCleaner",
    "Ray deduplicates logs",
    "Setting accelerator to CPU",
    "PreemptionWatcher",
    "ray/issues/53727",
    "max_restarts > 0",
)


def recipe_kind(path: Path) -> str:
    """The recipe's kind; only the kinds `lathe train submit` runs (a curation recipe is refused)."""
    from lathe.recipes import recipe_kind as kind_of

    return kind_of(path, training_only=True)


class JobView:
    """Turns a job's log lines into a progress bar, the passed-through lines and the result."""

    def __init__(self, kind: str, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.kind = kind
        self.out = err_console if quiet else console
        self.result: dict | None = None
        self.error: str | None = None
        self.progress = Progress(
            TextColumn(f"[bold]{kind}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.out,
            transient=False,
        )
        self.task = None
        self.last_step = -1.0

    def __enter__(self) -> JobView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, line: str) -> None:
        if line.startswith(RESULT_PREFIX):
            self.result = json.loads(line[len(RESULT_PREFIX) :])
            return
        stats = parse_progress(line)
        if stats is not None:
            if stats["step"] <= self.last_step:
                return  # Ray may deliver a worker's line twice
            self.last_step = stats["step"]
            shown = "  ".join(f"{k} {stats[k]:.4g}" for k in ("loss", "tokens_per_s", "rewards_accuracy") if k in stats)
            if self.task is None:
                self.task = self.progress.add_task(self.kind, total=stats["total"], stats=shown)
            self.progress.update(self.task, completed=stats["step"], stats=shown)
            return
        if any(noise in line for noise in NOISE):
            return
        if _strip_stage(line) != line:
            self.error = _strip_stage(line)
        self.progress.console.print(line, highlight=False, markup=False)


def _strip_stage(line: str) -> str:
    """``pretrain: recipe …: field: …`` (a stage's one-line error) without the stage name."""
    for module in set(ENTRY_POINTS.values()):
        prefix = module.rsplit(".", 1)[-1] + ": "
        if line.startswith(prefix):
            return line[len(prefix) :]
    return line


def _argv(recipe: Path, sets: list[str]) -> list[str]:
    module = entry_point_for(read_recipe(recipe), training_only=True, source=recipe)
    argv = [sys.executable, "-m", module, "--config", str(recipe.resolve())]
    for pair in sets:
        argv += ["--set", pair]
    return argv


@app.command("submit")
def submit(
    recipe: Path = typer.Argument(..., help="A recipe (its `kind` picks the stage).", exists=True),
    sets: list[str] = typer.Option([], "--set", help="Override a recipe field: FIELD=VALUE (repeatable)."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job to its end (default) or only queue it."),
    local: bool = typer.Option(False, "--local", help="Run in this process's own Ray instead of as a Ray job."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON (run, model version, metrics)."),
    with_deps: bool = typer.Option(
        False, "--with-deps", help="First run the stages the recipe needs whose output is missing (its tokenizer)."
    ),
    k8s: bool = typer.Option(False, "--k8s", help="Use KubeRay RayJobs in the current kube context instead of Ray."),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
    ray_cluster: str = typer.Option("lathe-ray", "--ray-cluster", help="RayCluster the RayJob runs on (with --k8s)."),
) -> None:
    """Submit a training recipe as a Ray job, stream its progress, print the run and the model version.

    The recipe is checked here first (fields, data, base model, batch sizes, memory): a mistake fails in seconds,
    naming the field, before a job is queued. With --with-deps, the stages it depends on run first when their
    output is missing (a pre-training recipe's tokenizer: pipelines/recipes/tokenizer.yaml, written where the
    recipe looks).
    """
    if with_deps and (k8s or address):
        raise ConfigError(
            "--with-deps: dependencies are found on this machine's disk, so it works with the local head only; "
            "submit pipelines/recipes/tokenizer.yaml first",
            param="with-deps",
        )
    if k8s:  # a RayJob on the release's RayCluster (lathe/k8s.py)
        from lathe.cli import train_k8s

        return train_k8s.submit(recipe, sets, namespace, ray_cluster, wait, json_output)
    s = settings()
    for planned in plan_dependencies(recipe, sets) if with_deps else []:
        (err_console if json_output else console).print(
            f"--with-deps: {planned.reason}; running {planned.recipe} first", highlight=False
        )
        done = run_recipe(s, planned.recipe, planned.sets, address=None, local=local, wait=True, quiet=json_output)
        if not json_output:
            _print_result(done)
    result = run_recipe(s, recipe, sets, address=address, local=local, wait=wait, quiet=json_output)
    if result.get("status") == "PENDING":
        if json_output:
            print_json(result)
        else:
            job_id, kind = result["job_id"], result["kind"]
            console.print(f"submitted Ray job [bold]{job_id}[/] ({kind}); follow it: lathe train logs {job_id} -f")
        return
    if json_output:
        print_json(result)
        return
    _print_result(result)


def run_recipe(
    s: LatheSettings, recipe: Path, sets: list[str], *, address: str | None, local: bool, wait: bool, quiet: bool
) -> dict:
    """Check, run and follow one recipe; its result (with ``job_id``), or the queued job without ``wait``."""
    from lathe.jobs import follow
    from lathe.jobs import submit as submit_job

    kind = recipe_kind(recipe)
    argv = _argv(recipe, sets)
    env = {"MLFLOW_TRACKING_URI": s.mlflow.uri, "LATHE_HOME": str(s.home.resolve()), "LATHE_RESULT_ONLY": "1"}
    if address is None:
        check = subprocess.run(
            [*argv, "--check"], env={**os.environ, **env}, capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            message = _strip_stage((check.stderr.strip().splitlines() or ["the recipe check failed"])[-1])
            raise ConfigError(message) if check.returncode == 2 else PlatformError(message)
    view = JobView(kind, quiet=quiet)
    started = time.monotonic()
    if local:
        with view:
            process = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert process.stdout is not None
            for line in process.stdout:
                view.line(line.rstrip("\n"))
            code = process.wait()
        if code != 0:
            raise PlatformError(f"{kind} failed: {view.error or f'exit code {code}'}")
        job_id = None
    else:
        job_id = submit_job(s, argv, address=address, env=env, cwd=None if address else str(Path.cwd()))
        if not wait:
            return {"job_id": job_id, "status": "PENDING", "kind": kind}
        try:
            with view:
                follow(s, job_id, address=address, on_line=view.line, started=started)
        except PlatformError as exc:
            if view.error:
                raise PlatformError(f"{kind} job {job_id} failed: {view.error}") from None
            raise exc
    if not view.result:
        raise PlatformError(f"the {kind} job ended without a result line")
    result = StageResult.parse(view.result).model_dump(mode="json")
    result["job_id"] = job_id
    return result


def _print_result(result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{result['stage']} — {result['name']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.get("metrics", {}).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    if result.get("job_id"):
        console.print(f"Ray job:    {result['job_id']}")
    if result.get("run_id"):
        console.print(f"MLflow run: {result['run_id']}")
    if result.get("model_version"):
        verb = "evaluated: " if result.get("stage") == "evaluate" else "registered:"
        console.print(f"{verb} [bold]{result['model_name']}[/] version [bold]{result['model_version']}[/]")
    if result.get("model_path"):
        console.print(f"output:     {result['model_path']}")


@app.command("list")
def list_jobs(
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
    k8s: bool = typer.Option(False, "--k8s", help="Use KubeRay RayJobs in the current kube context instead of Ray."),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
) -> None:
    """List the Ray jobs Lathe submitted, newest first."""
    if k8s:
        from lathe.cli import train_k8s

        return train_k8s.list_jobs(namespace, json_output)
    from rich.table import Table

    from lathe.jobs import jobs_client

    jobs = jobs_client(settings(), address).list_jobs()
    jobs = [j for j in jobs if (j.metadata or {}).get("submitted_by") == "lathe"]
    jobs.sort(key=lambda j: j.start_time or 0, reverse=True)
    rows = [
        {
            "job_id": j.submission_id or j.job_id,
            "status": str(j.status.value if hasattr(j.status, "value") else j.status),
            "entrypoint": j.entrypoint.split(" && ")[-1],
            "started": (j.start_time or 0) / 1000,
        }
        for j in jobs
    ]
    if json_output:
        print_json(rows)
        return
    table = Table(title="Ray jobs", title_justify="left")
    for column in ("job", "status", "entrypoint"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["job_id"], row["status"], row["entrypoint"][-80:])
    console.print(table)


@app.command("logs")
def logs(
    job_id: str = typer.Argument(..., help="The Ray job id (from `lathe train submit` or `lathe train list`)."),
    follow_logs: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the job ends."),
    address: str | None = typer.Option(None, "--address", help="Ray Jobs API of a cluster (default: the local head)."),
    k8s: bool = typer.Option(False, "--k8s", help="Use KubeRay RayJobs in the current kube context instead of Ray."),
    namespace: str = typer.Option("lathe", "--namespace", help="Namespace of the Lathe release (with --k8s)."),
) -> None:
    """Print a job's logs (or follow them)."""
    if k8s:
        from lathe.cli import train_k8s

        return train_k8s.logs(job_id, namespace, follow_logs)
    from lathe.jobs import follow, jobs_client

    s = settings()
    if follow_logs:
        try:
            follow(s, job_id, address=address, on_line=lambda line: console.print(line, highlight=False, markup=False))
        except LatheError as exc:
            err_console.print(exc.one_line())
            raise typer.Exit(1) from None
        return
    try:
        text = jobs_client(s, address).get_job_logs(job_id)
    except RuntimeError as exc:
        raise ConfigError(f"no Ray job {job_id!r} ({str(exc).splitlines()[0][:200]})") from None
    sys.stdout.write(text)
