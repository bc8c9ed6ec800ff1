"""The pipeline driver: checks everything, then runs the stages in order and records their outputs.

    python -m pipelines.flow run pipelines/demo.yaml [--set STAGE.FIELD=VALUE] [--from S] [--to S] [--run-id R]

``lathe pipeline run`` submits this command as one Ray job on the local head, and
``lathe pipeline run --k8s`` as one RayJob on the release's KubeRay cluster: Ray runs
it, and each stage is the stage's own command (``python -m pipelines.<stage> …``), a
child of the driver that joins the same Ray cluster. A stage's output, once it
succeeds, is recorded in ``<storage>/<pipeline>/<run>/state.json``; a failed stage
stops the pipeline, and ``--from STAGE`` runs again from there with the outputs the
run recorded. Why a driver of our own rather than a workflow engine: the stages are
already Ray programs, and a sequence of them needs ordering, references and a record,
not scheduling; Ray stays the engine and KubeRay the scheduler.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError, LatheError
from lathe.pipeline_events import event_line
from pipelines.flow.kinds import TRAINING, command, outputs_of
from pipelines.flow.spec import REFERENCE, Pipeline
from pipelines.flow.storage import Storage, is_uri
from pipelines.stagekit.settings import PipelineSettings


@dataclass
class Run:
    pipeline: Pipeline
    storage: Storage
    run_id: str
    settings: PipelineSettings
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def state_uri(self) -> str:
        return self.storage.join(self.pipeline.name, self.run_id, "state.json")

    @property
    def work(self) -> Path:
        """Local scratch: logs, and inputs fetched from a remote storage."""
        return Path(self.settings.home).expanduser().resolve() / "pipelines-work" / self.pipeline.name / self.run_id

    def outputs(self, stage: str) -> dict[str, str]:
        return self.state.get("stages", {}).get(stage, {}).get("outputs", {})

    def save(self) -> None:
        self.storage.write_text(self.state_uri, json.dumps(self.state, indent=2, default=str))


def emit(event: str, **fields: Any) -> None:
    print(event_line(event, **fields), flush=True)


def open_run(pipeline: Pipeline, storage: Storage, settings: PipelineSettings, run_id: str | None, start: str | None):
    """A new run, or the recorded one (``--run-id``, or the latest with ``--from``)."""
    if run_id is None and start is not None:
        runs = [r for r in storage.children(storage.join(pipeline.name)) if not r.startswith(".")]
        if not runs:
            raise ConfigError(f"--from {start}: no recorded run of pipeline {pipeline.name} in {storage.root}")
        run_id = runs[-1]
    run = Run(pipeline, storage, run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}", settings)
    recorded = storage.read_text(run.state_uri)
    run.state = json.loads(recorded) if recorded else {"pipeline": pipeline.name, "run": run.run_id, "stages": {}}
    return run


def check_recorded(run: Run, selected: list[str], start: str | None) -> None:
    for stage, output in sorted(run.pipeline.needed_outputs(selected)):
        if output not in run.outputs(stage):
            flag = f"--from {start}" if start else f"stage {selected[0]}"
            raise ConfigError(
                f"{flag}: stage {stage} has no recorded output {output!r} in run {run.run_id}; run it first"
            )


def check_gpus(pipeline: Pipeline, selected: list[str], settings: PipelineSettings) -> None:
    """Refuse a stage that asks for more GPUs than the cluster can ever have."""
    from pipelines.flow.kinds import recipe_model
    from pipelines.stagekit.recipes import load_recipe

    wanted = {}
    for name in selected:
        kind, stage = pipeline.kinds[name], pipeline.stages[name]
        if kind.name in TRAINING:
            scaling = {k: v for k, v in stage.set.items() if k.startswith("scaling.")}
            recipe = load_recipe(recipe_model(kind), stage.recipe, scaling)
            if recipe.scaling.use_gpu:
                wanted[name] = recipe.scaling.num_workers
    if not wanted:
        return
    most = settings.ray_max_gpus
    if most is None:
        import ray

        # The cluster of the Ray job (RAY_ADDRESS), else a Ray of this machine's own.
        ray.init(address=settings.ray_address, log_to_driver=False, include_dashboard=False)
        most = int(ray.cluster_resources().get("GPU", 0))
        ray.shutdown()
    for name, gpus in wanted.items():
        if gpus > most:
            raise ConfigError(
                f"stage {name}: scaling.num_workers asks for {gpus} GPUs but this cluster can have at most {most}"
            )


def resolve(run: Run, name: str) -> dict[str, Any]:
    """The stage's values with references substituted and remote inputs fetched to local files."""
    stage, kind = run.pipeline.stages[name], run.pipeline.kinds[name]
    params = run.pipeline.spec.params

    def lookup(stage_name: str, output: str) -> Any:
        return params[output] if stage_name == "params" else run.outputs(stage_name)[output]

    values = {}
    for key, value in stage.set.items():
        if isinstance(value, str) and (whole := REFERENCE.fullmatch(value)):
            value = lookup(whole.group(1), whole.group(2))
        elif isinstance(value, str):
            value = REFERENCE.sub(lambda m: str(lookup(m.group(1), m.group(2))), value)
        if key in kind.inputs:
            value = fetch_input(run, name, key, value)
        values[key] = value
    return values


def fetch_input(run: Run, stage: str, key: str, value: Any) -> Any:
    """A stage input as local files: a URI is fetched; a list of URIs is fetched into one folder."""
    folder = run.work / "inputs" / stage / key
    if isinstance(value, str) and is_uri(value):
        return str(run.storage.fetch(value, folder / value.rstrip("/").rsplit("/", 1)[-1]))
    if isinstance(value, list) and value and all(isinstance(v, str) and is_uri(v) for v in value):
        for number, uri in enumerate(value):
            # Numbered, so two URLs ending in the same name stay two files.
            run.storage.fetch(uri, folder / "all" / f"{number:05d}-{uri.rstrip('/').rsplit('/', 1)[-1]}")
        return str(folder / "all")
    return value


def run_stage(run: Run, name: str) -> dict[str, Any]:
    """Run one stage; its record (status, outputs, result). Raises LatheError when it fails."""
    from lathe.commands import run_logged
    from lathe.jobs import StageResult

    kind, stage = run.pipeline.kinds[name], run.pipeline.stages[name]
    folder_uri = run.storage.join(run.pipeline.name, run.run_id, name)
    local = Path(folder_uri) if not run.storage.remote else run.work / "outputs" / name
    writes_to = f"{folder_uri}/checkpoints" if kind.name in TRAINING else str(local)
    argv = [sys.executable, *command(kind, stage.recipe, resolve(run, name), writes_to)]
    if kind.recipe_model:
        argv.append("--json")
    log = run.work / "logs" / f"{name}.log"
    results: list[StageResult] = []

    def on_line(line: str) -> None:
        found = StageResult.from_line(line.rstrip("\n"))
        if found is not None:
            results.append(found)

    env_before = os.environ.pop("LATHE_RESULT_ONLY", None)  # the driver wants each stage's summary
    try:
        output = run_logged(argv, log, title=" ".join(argv[1:]), echo=sys.stdout, on_line=on_line)
    finally:
        if env_before is not None:
            os.environ["LATHE_RESULT_ONLY"] = env_before
    if output.exit_code not in ((0, 1) if kind.name == "gate" else (0,)):
        raise StageFailure(f"exited {output.exit_code}: {_last_line(log)}", log)
    payload = results[-1].model_dump(mode="json") if results else (output.payload or {})
    if kind.recipe_model and not results:
        raise StageFailure("ended without a result line", log)
    if kind.name in ("curation", "tokenizer", "sft-data"):
        run.storage.put_folder(local, folder_uri)
    return {
        "kind": kind.name,
        "status": "done",
        "outputs": outputs_of(kind, payload if kind.recipe_model else (output.payload or {}), folder_uri),
        "result": payload,
        "details": output.payload,
        "log": str(log),
    }


def _last_line(log: Path) -> str:
    """The stage's own last word: its one-line error, or the end of a traceback."""
    from lathe.demo.stage_lines import log_tail

    lines = [line.strip() for line in log_tail(log, 5) if line.strip()]
    return lines[-1][:300] if lines else "no output"


class StageFailure(LatheError):
    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message, hint=f"its log: {log}")
        self.log = log


def describe_stage(run: Run, name: str, record: dict[str, Any]) -> dict[str, Any]:
    result = record.get("result") or {}
    return {
        "stage": name,
        "status": record["status"],
        "seconds": record.get("seconds"),
        "run_id": result.get("run_id") or record.get("outputs", {}).get("run"),
        "mlflow_url": result.get("mlflow_url"),
        "outputs": record.get("outputs", {}),
        "log": record.get("log"),
    }


def execute(run: Run, selected: list[str]) -> int:
    """Run the selected stages in order, recording each; 0 when every one succeeded."""
    pipeline = run.pipeline
    emit(
        "start",
        pipeline=pipeline.name,
        run=run.run_id,
        storage=run.storage.root,
        stages=[{"name": n, "kind": pipeline.kinds[n].name} for n in selected],
    )
    for name in selected:
        emit("stage", stage=name, status="running")
        started = time.monotonic()
        try:
            record = run_stage(run, name)
        except LatheError as exc:
            log = getattr(exc, "log", None)
            error = exc.message if log else exc.one_line()
            run.state["stages"][name] = {"kind": pipeline.kinds[name].name, "status": "failed", "error": error}
            run.save()
            emit("stage", stage=name, status="failed", error=error, log=str(log) if log else None,
                 seconds=round(time.monotonic() - started, 1))  # fmt: skip
            emit("end", status="failed", error=f"{name}: {error}", state=run.state)
            return 1
        record["seconds"] = round(time.monotonic() - started, 1)
        run.state["stages"][name] = record
        run.save()
        emit("stage", **describe_stage(run, name, record))
    emit("end", status="succeeded", state=run.state)
    return 0


def prepare_run(pipeline: Pipeline, settings: PipelineSettings, *, start, stop, run_id) -> tuple[Run, list[str]]:
    """Every check that can fail before a stage starts; the run and the stages to execute."""
    selected = pipeline.select(start, stop)
    pipeline.check_recipes()
    storage = Storage.resolve(
        pipeline.spec.storage, settings.pipeline_storage, Path(settings.home), on_cluster=settings.pipeline_on_cluster
    )
    storage.probe()
    run = open_run(pipeline, storage, settings, run_id, start)
    check_recorded(run, selected, start)
    check_gpus(pipeline, selected, settings)
    return run, selected
