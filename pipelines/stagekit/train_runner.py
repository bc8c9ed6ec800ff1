"""The driver side of a training stage: MLflow run, Ray Train, registration, summary.

``run_stage`` opens the MLflow run first (so a crash leaves a run marked FAILED with
its error), logs the recipe and the training data as MLflow datasets, runs the loop on
a ``TorchTrainer`` (checkpoints under ``checkpoint.storage_path``, worker restarts from
the last one), then registers the exported Hugging Face folder with its lineage tags.
``training_stage`` makes the command line of a training stage from the function that
turns its recipe into a ``StageRun``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError, PlatformError
from lathe.jobs import StageResult, run_url
from pipelines.stagekit.entry import Stage, StageContext, StageOutcome, show_result_table
from pipelines.stagekit.model_options import check_attention
from pipelines.stagekit.settings import PipelineSettings, load_pipeline_settings


@dataclass
class StageRun:
    """What a stage hands the runner."""

    stage: str
    recipe: Any
    recipe_path: Path
    hooks: Any
    arrays: dict  # numpy arrays, one row per example
    payload: dict = field(default_factory=dict)
    flops_per_token: float = 0.0
    datasets: list = field(default_factory=list)  # mlflow.data datasets the run trained on
    params: dict = field(default_factory=dict)  # extra MLflow params (model size, …)
    tags: dict = field(default_factory=dict)  # extra tags on the run and the registered version
    base_model: str | None = None  # "name/version" of the model this one starts from


def flatten(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: str(value)[:500]}


def check_cluster(recipe: Any, ray_address: str | None, autoscaling: bool = False, max_gpus: int | None = None) -> None:
    """Refuse a job the cluster can never place (only where the cluster cannot grow, or beyond its GPU ceiling)."""
    import ray

    if recipe.scaling.use_gpu and max_gpus is not None and recipe.scaling.num_workers > max_gpus:
        raise ConfigError(
            f"scaling.num_workers: {recipe.scaling.num_workers} GPU workers but this cluster can have at most "
            f"{max_gpus} GPUs (LATHE_RAY_MAX_GPUS); lower scaling.num_workers"
        )
    need_cpu = recipe.scaling.num_workers * recipe.scaling.cpus_per_worker
    have = ray.cluster_resources()
    if recipe.scaling.use_gpu and have.get("GPU", 0) < recipe.scaling.num_workers and ray_address is None:
        raise ConfigError(
            f"scaling.use_gpu: this Ray cluster has {have.get('GPU', 0):g} GPUs for "
            f"{recipe.scaling.num_workers} workers; set use_gpu: false or submit to a GPU cluster with --address"
        )
    if have.get("CPU", 0) < need_cpu and not autoscaling:
        raise ConfigError(
            f"scaling: {recipe.scaling.num_workers} workers x {recipe.scaling.cpus_per_worker:g} CPUs need "
            f"{need_cpu:g} CPUs but the Ray cluster has {have.get('CPU', 0):g}; lower scaling.num_workers or "
            "scaling.cpus_per_worker (or set LATHE_RAY_AUTOSCALING=1 on an autoscaling cluster)"
        )


def run_stage(
    run: StageRun,
    *,
    tracking_uri: str | None,
    ray_address: str | None = None,
    settings: PipelineSettings | None = None,
) -> StageResult:
    import ray

    settings = settings or load_pipeline_settings()
    recipe = run.recipe
    mlflow_on = recipe.mlflow.enabled and tracking_uri is not None
    run_id, experiment_id = _start_mlflow(run, tracking_uri) if mlflow_on else (None, None)
    started = time.monotonic()
    storage = storage_path(recipe.checkpoint.storage_path, settings.pipeline_storage)
    trial_name = f"{recipe.name}-{(run_id or os.urandom(4).hex())[:8]}"
    try:
        if not ray.is_initialized():
            ray.init(address=ray_address, log_to_driver=True, include_dashboard=False)
        check_cluster(recipe, ray_address, settings.ray_autoscaling, settings.ray_max_gpus)
        trainer = _trainer(run, tracking_uri if mlflow_on else None, run_id, storage, trial_name, settings)
        print(
            f"{run.stage}: {recipe.scaling.num_workers} workers ({recipe.scaling.strategy}"
            f"{', ZeRO-' + str(recipe.scaling.zero_stage) if recipe.scaling.strategy == 'deepspeed' else ''}), "
            f"{recipe.training.max_steps} steps, global batch {recipe.global_batch}x{recipe.training.seq_len} tokens; "
            f"checkpoints in {storage}/{trial_name}",
            flush=True,
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise PlatformError("training ended without a checkpoint")
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
        version = None
        with result.checkpoint.as_directory() as folder:
            exported = Path(folder) / "hf"
            if recipe.mlflow.register_as and mlflow_on:
                version = _register(run, exported, run_id, tracking_uri)
            local_copy = _local_copy_dir(storage, trial_name, settings)
            _copy_tree(exported, local_copy)
    except BaseException as exc:
        if run_id is not None:
            _fail_mlflow(tracking_uri, run_id, exc)
        if isinstance(exc, ConfigError | KeyboardInterrupt):
            raise
        raise PlatformError(
            f"{run.stage} failed: {_root_message(exc)}; checkpoints are kept in {storage}/{trial_name}"
        ) from exc
    result = StageResult(
        stage=run.stage,
        name=recipe.name,
        run_id=run_id,
        mlflow_url=run_url(tracking_uri, experiment_id, run_id) if run_id else None,
        model_name=version.name if version else None,
        model_version=version.version if version else None,
        model_path=str(local_copy),
        output=str(local_copy),
        checkpoints=f"{storage}/{trial_name}",
        steps=int(metrics.get("step", recipe.training.max_steps)),
        seconds=round(time.monotonic() - started, 1),
        metrics={k: v for k, v in metrics.items() if k != "step"},
    )
    if run_id is not None:
        _finish_mlflow(result.seconds)
    return result


def _trainer(
    run: StageRun,
    tracking_uri: str | None,
    run_id: str | None,
    storage: str,
    trial_name: str,
    settings: PipelineSettings,
):
    """The TorchTrainer for a run: its workers, checkpoints, restarts and the loop's job."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.stagekit.train_loop import LoopJob, train_loop_per_worker, worker_env

    recipe = run.recipe
    job = LoopJob(
        recipe=recipe,
        hooks=run.hooks,
        arrays=ray.put(run.arrays),
        payload=run.payload,
        tracking_uri=tracking_uri,
        run_id=run_id,
        flops_per_token=run.flops_per_token,
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=recipe.scaling.num_workers,
            use_gpu=recipe.scaling.use_gpu,
            resources_per_worker={"CPU": recipe.scaling.cpus_per_worker}
            | ({"GPU": 1} if recipe.scaling.use_gpu else {}),
        ),
        run_config=RunConfig(
            name=trial_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=recipe.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=recipe.checkpoint.keep),
            worker_runtime_env={"env_vars": worker_env(recipe, settings.torch_extensions_dir)},
        ),
    )


def storage_path(path: str, shared: str | None = None) -> str:
    """Where Ray Train keeps the checkpoints: a URI as it is; a relative folder under the shared
    storage when there is one (``LATHE_PIPELINE_STORAGE``, which the chart sets on every Ray pod,
    so a recipe's ``.lathe/train`` reaches every node), else under the working directory."""
    if "://" in path:
        return path
    if shared and not Path(path).expanduser().is_absolute():
        return f"{shared.rstrip('/')}/{Path(path).as_posix().lstrip('./')}"
    return str(Path(path).expanduser().resolve())


def _local_copy_dir(storage: str, trial_name: str, settings: PipelineSettings) -> Path:
    """Where the final model's local copy goes: beside the checkpoints, or under LATHE_HOME when they are in
    object storage (the checkpoint there holds the same export, in ``hf/``)."""
    if "://" in storage:
        return Path(settings.home).expanduser().resolve() / "train" / trial_name / "final-model"
    return Path(storage) / trial_name / "final-model"


def _copy_tree(src: Path, dst: Path) -> None:
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _root_message(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    return (text[-1] if text else type(seen).__name__)[:400]


def _start_mlflow(run: StageRun, tracking_uri: str) -> tuple[str, str]:
    import mlflow

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "1")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(run.recipe.mlflow.experiment)
    active = mlflow.start_run(run_name=run.recipe.name)
    mlflow.log_params({**flatten("", run.recipe.model_dump(mode="json")), **run.params})
    mlflow.log_artifact(str(run.recipe_path), artifact_path="recipe")
    mlflow.set_tags({"lathe.stage": run.stage, "lathe.recipe": run.recipe_path.name, **run.tags})
    if run.base_model:
        mlflow.set_tag("lathe.base_model", run.base_model)
    for dataset in run.datasets:
        mlflow.log_input(dataset, context="training")
    # The run stays active in this process (workers log into it by id) until the end.
    return active.info.run_id, active.info.experiment_id


def _register(run: StageRun, folder: Path, run_id: str, tracking_uri: str):
    from lathe.registry import ModelRegistry

    tags = {"lathe.stage": run.stage, "lathe.recipe": run.recipe_path.name, **run.tags}
    if run.base_model:
        tags["lathe.base_model"] = run.base_model
    return ModelRegistry(tracking_uri).register_folder(
        folder, run.recipe.mlflow.register_as, alias=run.recipe.mlflow.alias, tags=tags, run_id=run_id
    )


def _finish_mlflow(seconds: float) -> None:
    import mlflow

    mlflow.log_metric("train_seconds", seconds)
    mlflow.end_run("FINISHED")


def _fail_mlflow(tracking_uri: str, run_id: str, exc: BaseException) -> None:
    import mlflow

    try:
        mlflow.set_tag("lathe.error", _root_message(exc))
        mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
    except Exception as log_exc:  # the original error matters more than the bookkeeping
        print(f"warning: could not mark MLflow run {run_id} failed ({type(log_exc).__name__})", file=sys.stderr)


def training_stage(name: str, doc: str, recipe_model: type, build: Callable[[Any, StageContext], StageRun]) -> Stage:
    """The command line of a training stage: ``build`` turns a checked recipe into its ``StageRun``."""

    def prepare(recipe: Any, context: StageContext) -> tuple[StageRun, str]:
        context.tracking_uri(recipe)  # MLflow is checked before the data, the model and the sizes
        check_attention(recipe)
        return build(recipe, context), f"; {recipe.global_batch} rows per step, ready to train"

    def run(work: StageRun, context: StageContext) -> StageOutcome:
        result = run_stage(
            work,
            tracking_uri=context.tracking_uri(work.recipe),
            ray_address=context.ray_address,
            settings=context.settings,
        )
        return StageOutcome(result)

    return Stage(name=name, doc=doc, recipe_model=recipe_model, prepare=prepare, run=run, show=show_result_table)
