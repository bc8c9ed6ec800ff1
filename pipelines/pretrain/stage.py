"""Pre-training hooks for the shared loop: the tokenizer, a Llama-style model, its loss and export."""

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
            "train one first: lathe train submit pipelines/recipes/tokenizer.yaml "
            "(or submit this recipe with --with-deps, which does it)"
        )
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def load_tokenizer(files: dict[str, bytes]):
    from transformers import AutoTokenizer

    folder = Path(tempfile.mkdtemp(prefix="lathe-tok-"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return AutoTokenizer.from_pretrained(str(folder))


def llama_config(recipe: PretrainRecipe, tokenizer, attn_implementation: str | None = None):
    """The model's config; ``attn_implementation`` None leaves transformers' default (for sizing)."""
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
        attn_implementation=attn_implementation,
    )


def build_model(recipe: PretrainRecipe, payload: dict):
    import torch
    from transformers import LlamaForCausalLM

    from pipelines.stagekit.model_options import apply_gradient_checkpointing, worker_attn_implementation

    tokenizer = load_tokenizer(payload["tokenizer_files"])
    torch.manual_seed(recipe.training.seed)  # the same initial weights on every worker
    model = LlamaForCausalLM(llama_config(recipe, tokenizer, worker_attn_implementation(recipe)))
    model.config.use_cache = False  # training builds no KV cache
    return apply_gradient_checkpointing(model, recipe)


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
