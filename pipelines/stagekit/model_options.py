"""How a worker builds the model it trains: the attention kernel and gradient checkpointing.

Both knobs live in the recipe's ``training`` section and are read by every stage's
``build_model`` on every worker. ``check_attention`` is the pre-flight half: ``--check``
refuses ``flash_attention_2`` where the ``flash_attn`` package is missing, before any
worker starts.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lathe.errors import ConfigError

HALF_PRECISIONS = ("bf16", "fp16")


def flash_attn_installed() -> bool:
    """Whether the ``flash_attn`` package can be imported here (without importing it: it loads CUDA)."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str, use_gpu: bool, precision: str) -> str:
    """The attention kernel to ask transformers for; ``precision`` is the one the worker trains in.

    ``auto`` takes FlashAttention-2 only where it can run (the package, GPUs, half
    precision), and PyTorch's scaled-dot-product attention everywhere else.
    """
    if requested != "auto":
        return requested
    if use_gpu and precision in HALF_PRECISIONS and flash_attn_installed():
        return "flash_attention_2"
    return "sdpa"


def check_attention(recipe: Any) -> None:
    """Pre-flight: an explicit ``flash_attention_2`` needs the package where the job runs."""
    if recipe.training.attn_implementation == "flash_attention_2" and not flash_attn_installed():
        raise ConfigError(
            "training.attn_implementation: flash_attention_2 needs the flash_attn package, which is not "
            "installed here (pip install flash-attn, or set auto to fall back to sdpa)"
        )


def worker_attn_implementation(recipe: Any) -> str:
    """The kernel a worker uses, resolved with the precision it actually trains in."""
    from pipelines.stagekit.engine import precision_for

    return resolve_attn_implementation(
        recipe.training.attn_implementation, recipe.scaling.use_gpu, precision_for(recipe)
    )


def apply_gradient_checkpointing(model: Any, recipe: Any, adapters: bool = False) -> Any:
    """Turn on ``training.gradient_checkpointing`` for a Hugging Face model (before LoRA wraps it).

    Non-reentrant checkpointing works under DDP and DeepSpeed and with frozen weights.
    With adapters the embedding output is made to require grad, so that checkpointed
    blocks whose weights are all frozen still pass gradients to the adapters inside.
    """
    if not recipe.training.gradient_checkpointing:
        return model
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if adapters:
        model.enable_input_require_grads()
    return model
