"""The model as one worker trains it: precision, optimiser, cosine schedule, DDP or DeepSpeed.

``build_engine`` wraps a stage's model for the run's strategy (Ray Train's DDP, or a
DeepSpeed ZeRO engine); ``Engine.local`` is the same model unwrapped, for one process
(tests, benchmarks). Everything the step, the checkpoints and the resume need is on the
``Engine``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def cosine_lr_lambda(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def precision_for(recipe: Any) -> str:
    import torch

    precision = recipe.scaling.precision
    if precision != "auto":
        return precision
    if recipe.scaling.use_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def deepspeed_config(recipe: Any, precision: str) -> dict:
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


@dataclass
class Engine:
    """The model being trained, with what steps, checkpoints and resumes need of it."""

    wrapped: Any  # what the forward pass calls: the DDP module, the DeepSpeed engine, or the model
    raw: Any  # the model itself (its weights are what gets saved and exported)
    optimizer: Any
    scheduler: Any
    device: Any
    trainable: list  # parameters with requires_grad
    trainable_names: set[str]
    deepspeed: bool = False

    @classmethod
    def local(cls, model: Any, recipe: Any) -> Engine:
        """The model unwrapped in this process, with the recipe's optimiser and schedule."""
        import torch

        trainable, names, optimizer, scheduler = _optimisation(model, recipe)
        return cls(model, model, optimizer, scheduler, torch.device("cpu"), trainable, names)

    def learning_rate(self) -> float:
        return float(self.scheduler.get_last_lr()[0])


def _optimisation(model: Any, recipe: Any) -> tuple[list, set[str], Any, Any]:
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(trainable, recipe)
    schedule = cosine_lr_lambda(recipe.optimizer.warmup_steps, recipe.training.max_steps, recipe.optimizer.min_lr_ratio)
    return trainable, names, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def build_engine(model: Any, recipe: Any, precision: str) -> Engine:
    """Wrap ``model`` for the recipe's strategy inside a Ray Train worker."""
    trainable, names, optimizer, scheduler = _optimisation(model, recipe)
    if recipe.scaling.strategy == "deepspeed":
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            model_parameters=trainable,
            config=deepspeed_config(recipe, precision),
        )
        return Engine(engine, engine.module, optimizer, scheduler, engine.device, trainable, names, deepspeed=True)
    from ray.train.torch import get_device, prepare_model

    device = get_device()
    wrapped = prepare_model(model)
    raw = wrapped.module if hasattr(wrapped, "module") else wrapped
    return Engine(wrapped, raw, optimizer, scheduler, device, trainable, names)
