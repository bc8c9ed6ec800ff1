"""Sizing a training run before any worker starts: parameters, FLOPs per token, memory, rows.

Every training stage runs these checks in its pre-flight (``--check``), so a run that
cannot fit or cannot fill one step fails in seconds, naming the recipe field to change.
"""

from __future__ import annotations

from lathe.errors import ConfigError


def parameter_count(config) -> int:
    """Parameters of a model built from ``config``, counted without allocating it."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(n_params: int, config, seq_len: int, weight_grads: bool = True) -> float:
    """6N for the dense layers plus the attention scores (PaLM's appendix B estimate).

    Without weight gradients (frozen weights under LoRA) the backward pass costs one
    matmul per layer instead of two: 4N.
    """
    dense = (6.0 if weight_grads else 4.0) * n_params
    return dense + 12.0 * config.num_hidden_layers * config.hidden_size * seq_len


def activation_bytes(micro_batch: int, seq_len: int, config, checkpointing: bool) -> float:
    """Activations one worker keeps for the backward pass (Korthikanti et al.: ~34 bytes per
    token and hidden unit per layer in 16-bit, with a fused attention kernel).

    With gradient checkpointing each layer keeps only its 16-bit input, and one layer at
    a time holds its full activations while it is recomputed.
    """
    per_layer = 34.0 * micro_batch * seq_len * config.hidden_size
    if not checkpointing:
        return per_layer * config.num_hidden_layers
    return 2.0 * micro_batch * seq_len * config.hidden_size * config.num_hidden_layers + per_layer


def check_memory(recipe, n_params: int, trainable: int, config) -> float:
    """Estimated GiB one worker needs; a ConfigError naming the fix when it does not fit."""
    import psutil

    s, t = recipe.scaling, recipe.training
    world = s.num_workers
    weights = n_params * 4.0
    grads_and_adam = trainable * (4.0 + 8.0)
    if s.strategy == "deepspeed" and s.zero_stage >= 1:
        grads_and_adam = trainable * (4.0 + 8.0 / world) if s.zero_stage == 1 else trainable * 12.0 / world
        if s.zero_stage == 3:
            weights /= world
    activations = activation_bytes(t.micro_batch_size, t.seq_len, config, t.gradient_checkpointing)
    need_gb = (weights + grads_and_adam + activations) / 2**30 + 0.5
    limit = s.memory_per_worker_gb
    if limit is None:
        limit = 80.0 if s.use_gpu else psutil.virtual_memory().total / 2**30 / world
    if need_gb > limit:
        checkpointing = "" if t.gradient_checkpointing else "set training.gradient_checkpointing: true, "
        raise ConfigError(
            f"scaling.memory_per_worker_gb: the model needs about {need_gb:.1f} GiB per worker "
            f"({n_params / 1e6:.0f}M parameters) but a worker has {limit:.1f} GiB; lower "
            f"training.micro_batch_size, {checkpointing}use strategy: deepspeed with a higher zero_stage, "
            "or more workers"
        )
    return need_gb


def check_batches(recipe, rows: int, what: str) -> None:
    if rows < recipe.global_batch:
        t = recipe.training
        raise ConfigError(
            f"training.micro_batch_size: {t.micro_batch_size} x grad_accum_steps {t.grad_accum_steps} x "
            f"{recipe.scaling.num_workers} workers = {recipe.global_batch} rows per step, but the data has only "
            f"{rows} {what}; lower the batch sizes or add data"
        )
