"""Pre-training hooks for the shared loop, and the data and size checks before it starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lathe.errors import ConfigError
from pipelines.pretrain.config import PretrainRecipe
from pipelines.stagekit.train_loop import StageHooks


def tokenizer_files(folder: str | Path, field_name: str = "tokenizer") -> dict[str, bytes]:
    folder = Path(folder).expanduser()
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(
            f"{field_name}: {folder} is not a tokenizer folder (no tokenizer.json); "
            "train one first: lathe train submit pipelines/recipes/tokenizer.yaml"
        )
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def load_tokenizer(files: dict[str, bytes]):
    from transformers import AutoTokenizer

    folder = Path(tempfile.mkdtemp(prefix="lathe-tok-"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return AutoTokenizer.from_pretrained(str(folder))


def llama_config(recipe: PretrainRecipe, tokenizer):
    from transformers import LlamaConfig

    m = recipe.model
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        num_key_value_heads=m.num_kv_heads or m.num_heads,
        max_position_embeddings=recipe.training.seq_len,
        rope_theta=m.rope_theta,
        tie_word_embeddings=m.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(recipe: PretrainRecipe, payload: dict):
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = load_tokenizer(payload["tokenizer_files"])
    torch.manual_seed(recipe.training.seed)  # the same initial weights on every worker
    model = LlamaForCausalLM(llama_config(recipe, tokenizer))
    model.config.use_cache = False  # training builds no KV cache
    return model


def causal_lm_loss(model, raw, batch: dict, recipe) -> tuple:
    input_ids = batch["input_ids"]
    loss = model(input_ids=input_ids, labels=input_ids).loss
    return loss, int(input_ids.numel()), {}


def export(raw, out: Path, recipe, payload: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    raw.config.use_cache = True  # for serving
    raw.save_pretrained(str(out), safe_serialization=True)
    tokenizer = load_tokenizer(payload["tokenizer_files"])
    tokenizer.save_pretrained(str(out))
    config = raw.generation_config
    config.eos_token_id = tokenizer.eos_token_id
    config.save_pretrained(str(out))


HOOKS = StageHooks(build_model=build_model, loss=causal_lm_loss, export=export)


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
    activations = 34.0 * t.micro_batch_size * t.seq_len * config.hidden_size * config.num_hidden_layers
    need_gb = (weights + grads_and_adam + activations) / 2**30 + 0.5
    limit = s.memory_per_worker_gb
    if limit is None:
        limit = 80.0 if s.use_gpu else psutil.virtual_memory().total / 2**30 / world
    if need_gb > limit:
        raise ConfigError(
            f"scaling.memory_per_worker_gb: the model needs about {need_gb:.1f} GiB per worker "
            f"({n_params / 1e6:.0f}M parameters) but a worker has {limit:.1f} GiB; lower "
            "training.micro_batch_size, use strategy: deepspeed with a higher zero_stage, or more workers"
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
