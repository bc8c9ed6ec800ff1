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
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "lathe_state.pt"
META_FILE = "lathe_checkpoint.json"
EXPORT_DIR = "hf"
DS_TAG = "state"

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


def cosine_lr_lambda(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


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


def _precision(recipe: Any) -> str:
    import torch

    precision = recipe.scaling.precision
    if precision != "auto":
        return precision
    if recipe.scaling.use_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _deepspeed_config(recipe: Any, precision: str) -> dict:
    t = recipe.training
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum_steps,
        "train_batch_size": recipe.global_batch,
        "gradient_clipping": recipe.optimizer.grad_clip,
        "zero_optimization": {"stage": recipe.scaling.zero_stage},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif precision == "fp16":
        config["fp16"] = {"enabled": True}
    return config


def build_optimizer(params: list, recipe: Any):
    import torch

    o = recipe.optimizer
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=o.learning_rate, betas=tuple(o.betas), eps=o.eps, fused=False
    )


def train_loop_per_worker(config: dict) -> None:
    """The body of every worker (``TorchTrainer(train_loop_per_worker, train_loop_config=…)``)."""
    import ray
    import ray.train
    import torch
    import torch.distributed as dist

    job: LoopJob = config["job"]
    recipe, hooks = job.recipe, job.hooks
    t = recipe.training
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = max(1, int(recipe.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    torch.manual_seed(t.seed + rank)
    arrays = ray.get(job.arrays) if isinstance(job.arrays, ray.ObjectRef) else job.arrays
    n = len(next(iter(arrays.values())))
    precision = _precision(recipe)
    deepspeed_on = recipe.scaling.strategy == "deepspeed"

    model = hooks.build_model(recipe, job.payload)
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_names = {name for name, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(trainable, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        cosine_lr_lambda(recipe.optimizer.warmup_steps, t.max_steps, recipe.optimizer.min_lr_ratio),
    )
    if deepspeed_on:
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            model_parameters=trainable,
            config=_deepspeed_config(recipe, precision),
        )
        wrapped, raw, device = engine, engine.module, engine.device
    else:
        from ray.train.torch import get_device, prepare_model

        device = get_device()
        wrapped = prepare_model(model)
        raw = wrapped.module if hasattr(wrapped, "module") else wrapped

    start_step, resumed_from = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            meta = json.loads((Path(folder) / META_FILE).read_text())
            if deepspeed_on:
                wrapped.load_checkpoint(folder, tag=DS_TAG)
            else:
                state = torch.load(Path(folder) / STATE_FILE, map_location=device, weights_only=False)
                missing = raw.load_state_dict(state["model"], strict=False).missing_keys
                lost = sorted(set(missing) & trainable_names)
                if lost:
                    raise RuntimeError(f"checkpoint lacks trainable weights: {lost[:3]}")
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
        start_step = resumed_from = int(meta["step"])
        if rank == 0:
            print(f"resumed from the checkpoint at step {start_step}", flush=True)

    mlflow_client = None
    if rank == 0 and job.tracking_uri and job.run_id:
        from mlflow.tracking import MlflowClient

        mlflow_client = MlflowClient(job.tracking_uri)

    use_autocast = precision == "bf16" and recipe.scaling.use_gpu and not deepspeed_on

    def autocast():
        # DDP keeps fp32 master weights and runs the forward pass in bf16 where the GPU has it.
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_autocast else contextlib.nullcontext()

    peak = peak_flops(recipe.scaling.use_gpu, recipe.scaling.peak_tflops_per_worker, threads) * world
    window_tokens, window_start = 0, time.perf_counter()
    # Steady-state throughput: every window after the first (which pays for warm-up).
    steady_tokens, steady_seconds, windows = 0.0, 0.0, 0
    last: dict[str, float] = {}

    def batch_for(step: int, micro: int) -> dict:
        rows = example_indices(step, micro, rank, world, t.micro_batch_size, n, t.grad_accum_steps, t.seed)
        return {k: torch.as_tensor(v[rows]).to(device) for k, v in arrays.items()}

    wrapped.train()
    for step in range(start_step, t.max_steps):
        step_tokens, loss_sum, extras = 0, 0.0, {}
        for micro in range(t.grad_accum_steps):
            batch = batch_for(step, micro)
            sync = deepspeed_on or world == 1 or micro == t.grad_accum_steps - 1
            with contextlib.nullcontext() if sync else wrapped.no_sync():
                with autocast():
                    loss, tokens, extra = hooks.loss(wrapped, raw, batch, recipe)
                if deepspeed_on:
                    wrapped.backward(loss)
                    wrapped.step()
                else:
                    (loss / t.grad_accum_steps).backward()
            step_tokens += tokens
            loss_sum += float(loss.detach())
            for key, value in extra.items():
                extras[key] = extras.get(key, 0.0) + value / t.grad_accum_steps
        if deepspeed_on:
            grad_norm = float(wrapped.get_global_grad_norm() or 0.0)
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, recipe.optimizer.grad_clip))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        done = step + 1
        window_tokens += step_tokens
        if done % t.log_every == 0 or done == t.max_steps or done == start_step + 1:
            stats = torch.tensor([loss_sum / t.grad_accum_steps, float(window_tokens), *extras.values()])
            if world > 1:
                dist.all_reduce(stats)
                stats[0] /= world
                stats[2:] /= world
            elapsed = time.perf_counter() - window_start
            tokens_per_s = float(stats[1]) / max(elapsed, 1e-9)
            windows += 1
            if windows > 1:
                steady_tokens += float(stats[1])
                steady_seconds += elapsed
            last = {
                "loss": float(stats[0]),
                "learning_rate": float(scheduler.get_last_lr()[0]),
                "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s,
                "mfu": job.flops_per_token * tokens_per_s / peak if peak else 0.0,
                **{key: float(v) for key, v in zip(extras, stats[2:].tolist(), strict=True)},
            }
            if steady_seconds:
                last["tokens_per_s_mean"] = steady_tokens / steady_seconds
            window_tokens, window_start = 0, time.perf_counter()
            if rank == 0:
                _progress(done, t.max_steps, last)
                if mlflow_client is not None:
                    _log_metrics(mlflow_client, job.run_id, last, done)
        final = done == t.max_steps
        if done % recipe.checkpoint.every_steps == 0 or final:
            _checkpoint(wrapped, raw, optimizer, scheduler, recipe, job, done, final, trainable_names, rank, last)
            if final:
                break
    if rank == 0:
        print(f"training finished at step {t.max_steps} (resumed from {resumed_from})", flush=True)


def _checkpoint(wrapped, raw, optimizer, scheduler, recipe, job: LoopJob, step, final, trainable_names, rank, last):
    import ray.train
    import torch

    deepspeed_on = recipe.scaling.strategy == "deepspeed"
    with tempfile.TemporaryDirectory(prefix="lathe-ckpt-") as folder:
        path = Path(folder)
        if deepspeed_on:
            wrapped.save_checkpoint(folder, tag=DS_TAG, client_state={"step": step})
        elif rank == 0:
            state = {k: v for k, v in raw.state_dict().items() if k in trainable_names}
            torch.save(
                {"model": state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                path / STATE_FILE,
            )
        if final:
            _export(raw, path / EXPORT_DIR, recipe, job, rank)
        if rank == 0:
            (path / META_FILE).write_text(json.dumps({"step": step, "final": final}))
        report_checkpoint = deepspeed_on or rank == 0
        metrics = {"step": step, **last}
        checkpoint = ray.train.Checkpoint.from_directory(folder) if report_checkpoint else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint-{step:08d}")


def _export(raw, out: Path, recipe, job: LoopJob, rank: int) -> None:
    if recipe.scaling.strategy == "deepspeed" and recipe.scaling.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(raw.parameters()), modifier_rank=None):
            if rank == 0:
                job.hooks.export(raw, out, recipe, job.payload)
    elif rank == 0:
        job.hooks.export(raw, out, recipe, job.payload)


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
