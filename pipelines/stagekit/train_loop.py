"""The training loop every stage runs inside Ray Train's ``TorchTrainer``.

One loop for pre-training, SFT and DPO; a stage brings a ``StageHooks`` (how to build
the model, the loss of one micro-batch, how to export the result). The loop owns the
rest: DDP over gloo/NCCL or DeepSpeed ZeRO, mixed precision, gradient accumulation and
clipping, the cosine schedule, checkpoints every N steps, resuming after a worker
failure, and metrics to MLflow from rank 0.

Which examples a step sees depends on the step number alone (a seeded permutation per
epoch), so a resumed run sees exactly the data the lost one would have, and finishes
at the same step count.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.stagekit.engine import Engine

# Dense bf16 TFLOP/s of accelerators we know, for the MFU estimate.
KNOWN_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


@dataclass
class StageHooks:
    """What a stage plugs into the loop. Functions must be importable module-level ones."""

    # (recipe, payload) -> torch.nn.Module; trainable parameters have requires_grad set.
    build_model: Callable[[Any, dict], Any]
    # (model, raw_model, batch: dict[str, Tensor], recipe) -> (loss, tokens, {metric: float})
    loss: Callable[..., tuple[Any, int, dict[str, float]]]
    # (raw_model, out_dir: Path, recipe, payload) -> None; writes a Hugging Face folder.
    export: Callable[[Any, Path, Any, dict], None]


@dataclass
class LoopJob:
    """Everything a worker needs, sent through Ray (no shared filesystem assumed)."""

    recipe: Any
    hooks: StageHooks
    arrays: Any  # ObjectRef (or dict) of equal-length numpy arrays: one row per example
    payload: dict = field(default_factory=dict)  # stage extras (tokenizer files, base model URI, …)
    tracking_uri: str | None = None
    run_id: str | None = None
    flops_per_token: float = 0.0


def example_indices(
    step: int, micro: int, rank: int, world: int, size: int, n: int, accum: int, seed: int
) -> list[int]:
    """Rows of the dataset for one micro-batch: a function of the step alone."""
    per_step = size * accum * world
    start = step * per_step + micro * size * world + rank * size
    rows = []
    for position in range(start, start + size):
        epoch, offset = divmod(position, n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        rows.append(int(order[offset]))
    return rows


def peak_flops(use_gpu: bool, override_tflops: float | None, threads: int) -> float:
    if override_tflops:
        return override_tflops * 1e12
    if use_gpu:
        import torch

        name = torch.cuda.get_device_name()
        for key, tflops in KNOWN_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
        return 100e12
    import psutil

    freq = psutil.cpu_freq()
    ghz = (freq.max or freq.current or 2500) / 1000 if freq else 2.5
    # AVX2: two 8-wide fp32 FMA units, 32 FLOP per cycle per core.
    return threads * ghz * 1e9 * 32


@dataclass
class StepResult:
    tokens: int
    loss: float  # the mean over the step's micro-batches
    grad_norm: float
    extras: dict[str, float]  # the stage's own metrics (DPO rewards), averaged the same way


def train_step(
    engine: Engine,
    batch_for: Callable[[int], dict],
    loss_fn: Callable[..., tuple[Any, int, dict[str, float]]],
    recipe: Any,
    world: int,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> StepResult:
    """One optimiser step over ``grad_accum_steps`` micro-batches (``batch_for(micro)``); no Ray.

    DDP all-reduces gradients only on the last micro-batch; DeepSpeed accumulates, clips
    and steps inside its engine.
    """
    import torch

    accum = recipe.training.grad_accum_steps
    wrapped = engine.wrapped
    tokens, loss_sum, extras = 0, 0.0, {}
    for micro in range(accum):
        batch = batch_for(micro)
        sync = engine.deepspeed or world == 1 or micro == accum - 1
        with contextlib.nullcontext() if sync else wrapped.no_sync():
            with autocast():
                loss, count, extra = loss_fn(wrapped, engine.raw, batch, recipe)
            if engine.deepspeed:
                wrapped.backward(loss)
                wrapped.step()
            else:
                (loss / accum).backward()
        tokens += count
        loss_sum += float(loss.detach())
        for key, value in extra.items():
            extras[key] = extras.get(key, 0.0) + value / accum
    if engine.deepspeed:
        grad_norm = float(wrapped.get_global_grad_norm() or 0.0)
    else:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(engine.trainable, recipe.optimizer.grad_clip))
        engine.optimizer.step()
        engine.scheduler.step()
        engine.optimizer.zero_grad(set_to_none=True)
    return StepResult(tokens, loss_sum / accum, grad_norm, extras)


@dataclass
class ThroughputWindow:
    """Tokens per second over the steps since the last log line, across all workers.

    The first window pays for warm-up, so ``tokens_per_s_mean`` (the steady state) counts
    every window after it.
    """

    world: int
    peak_flops: float  # of all workers together
    flops_per_token: float
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    steady_tokens: float = 0.0
    steady_seconds: float = 0.0
    windows: int = 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def close(self, step: StepResult, learning_rate: float) -> dict[str, float]:
        """The metrics of the window that ends with ``step`` (averaged over workers); a new window starts."""
        import torch
        import torch.distributed as dist

        stats = torch.tensor([step.loss, float(self.tokens), *step.extras.values()])
        if self.world > 1:
            dist.all_reduce(stats)
            stats[0] /= self.world
            stats[2:] /= self.world
        elapsed = time.perf_counter() - self.started
        tokens_per_s = float(stats[1]) / max(elapsed, 1e-9)
        self.windows += 1
        if self.windows > 1:
            self.steady_tokens += float(stats[1])
            self.steady_seconds += elapsed
        metrics = {
            "loss": float(stats[0]),
            "learning_rate": learning_rate,
            "grad_norm": step.grad_norm,
            "tokens_per_s": tokens_per_s,
            "mfu": self.flops_per_token * tokens_per_s / self.peak_flops if self.peak_flops else 0.0,
            **{key: float(v) for key, v in zip(step.extras, stats[2:].tolist(), strict=True)},
        }
        if self.steady_seconds:
            metrics["tokens_per_s_mean"] = self.steady_tokens / self.steady_seconds
        self.tokens, self.started = 0, time.perf_counter()
        return metrics


def train_loop_per_worker(config: dict) -> None:
    """The body of every worker (``TorchTrainer(train_loop_per_worker, train_loop_config=…)``)."""
    import ray
    import ray.train
    import torch

    from pipelines.stagekit.checkpoints import CheckpointWriter, resume
    from pipelines.stagekit.engine import build_engine, precision_for

    job: LoopJob = config["job"]
    recipe, t = job.recipe, job.recipe.training
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = max(1, int(recipe.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    torch.manual_seed(t.seed + rank)
    arrays = ray.get(job.arrays) if isinstance(job.arrays, ray.ObjectRef) else job.arrays
    n = len(next(iter(arrays.values())))
    precision = precision_for(recipe)
    engine = build_engine(job.hooks.build_model(recipe, job.payload), recipe, precision)
    if rank == 0:
        attention = getattr(getattr(engine.raw, "config", None), "_attn_implementation", "default")
        checkpointing = "on" if t.gradient_checkpointing else "off"
        print(f"model: {precision}, {attention} attention, gradient checkpointing {checkpointing}", flush=True)

    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start_step = resume(engine, Path(folder))
        if rank == 0:
            print(f"resumed from the checkpoint at step {start_step}", flush=True)
    mlflow_client = _metrics_client(job) if rank == 0 else None

    def autocast():
        # DDP keeps fp32 master weights and runs the forward pass in bf16 where the GPU has it.
        on = precision == "bf16" and recipe.scaling.use_gpu and not engine.deepspeed
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if on else contextlib.nullcontext()

    def batch_for(step: int, micro: int) -> dict:
        rows = example_indices(step, micro, rank, world, t.micro_batch_size, n, t.grad_accum_steps, t.seed)
        return {k: torch.as_tensor(v[rows]).to(engine.device) for k, v in arrays.items()}

    peak = peak_flops(recipe.scaling.use_gpu, recipe.scaling.peak_tflops_per_worker, threads) * world
    window = ThroughputWindow(world, peak, job.flops_per_token)
    writer = CheckpointWriter(engine, recipe, job.hooks, job.payload, rank)
    last: dict[str, float] = {}
    engine.wrapped.train()
    for step in range(start_step, t.max_steps):
        result = train_step(engine, lambda micro, s=step: batch_for(s, micro), job.hooks.loss, recipe, world, autocast)
        done = step + 1
        window.add(result.tokens)
        if done % t.log_every == 0 or done == t.max_steps or done == start_step + 1:
            last = window.close(result, engine.learning_rate())
            if rank == 0:
                _progress(done, t.max_steps, last)
                if mlflow_client is not None:
                    _log_metrics(mlflow_client, job.run_id, last, done)
        final = done == t.max_steps
        if done % recipe.checkpoint.every_steps == 0 or final:
            writer.write(done, final, last)
            if final:
                break
    if rank == 0:
        print(f"training finished at step {t.max_steps} (resumed from {start_step})", flush=True)


def _metrics_client(job: LoopJob):
    """Rank 0 logs the metrics into the driver's MLflow run (None without one)."""
    if not (job.tracking_uri and job.run_id):
        return None
    from mlflow.tracking import MlflowClient

    return MlflowClient(job.tracking_uri)


def _progress(step: int, total: int, metrics: dict[str, float]) -> None:
    from lathe.jobs import progress_line

    print(progress_line(step, total, metrics), flush=True)


def _log_metrics(client, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    try:
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items() if math.isfinite(v)])
    except Exception as exc:  # a tracking outage must not kill a training run
        print(f"warning: could not log metrics to MLflow ({type(exc).__name__}); training goes on", flush=True)


def worker_env(recipe: Any, torch_extensions_dir: str | None = None) -> dict[str, str]:
    """Environment the workers need (variables set in the driver do not reach them)."""
    env = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(max(1, int(recipe.scaling.cpus_per_worker)))}
    if recipe.scaling.strategy == "deepspeed" and not recipe.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    cache = torch_extensions_dir or str(Path.home() / ".cache" / "lathe-torch-extensions")
    env["TORCH_EXTENSIONS_DIR"] = cache
    return env
