"""SFT and DPO on the shared loop: base model, LoRA, losses, export (merged, or the adapter alone).

DPO needs no second model: the reference log-probabilities come from the same network
with its LoRA adapters switched off, the usual trick for LoRA-DPO.
"""

from __future__ import annotations

import json
from pathlib import Path

from lathe.errors import ConfigError, LatheError
from pipelines.finetune.chat import IGNORE
from pipelines.finetune.config import FinetuneRecipe
from pipelines.stagekit.train_loop import StageHooks


def resolve_base(recipe: FinetuneRecipe, tracking_uri: str | None, cache_dir: Path) -> tuple[dict, Path, str | None]:
    """(payload entry for workers, local folder, "name/version" for lineage)."""
    if recipe.base_model.startswith("models:/"):
        from lathe.registry import ModelRegistry, parse_model_uri

        if tracking_uri is None:
            raise ConfigError("base_model: a registry URI needs MLflow (set mlflow.enabled: true)")
        ref = parse_model_uri(recipe.base_model, param="base_model")
        registry = ModelRegistry(tracking_uri)
        try:
            info = registry.locate(ref)
        except LatheError as exc:
            raise ConfigError(f"base_model: {exc.message}", hint="see `lathe models list`") from None
        if info.adapter_of is not None:
            raise ConfigError(
                f"base_model: {info.name}/{info.version} is a LoRA adapter, not a model; "
                f"fine-tune its base ({info.adapter_of or 'see its lineage'}) or a merged version"
            )
        folder = registry.download(info.name, info.version, cache_dir)
        entry = {"registry": tracking_uri, "name": info.name, "version": info.version, "cache": str(cache_dir)}
        return entry, folder, f"{info.name}/{info.version}"
    folder = Path(recipe.base_model).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"base_model: {folder} is not a Hugging Face model folder (no config.json)")
    return {"path": str(folder)}, folder, None


def base_folder(entry: dict) -> Path:
    if "path" in entry:
        return Path(entry["path"])
    from lathe.registry import ModelRegistry

    return ModelRegistry(entry["registry"]).download(entry["name"], entry["version"], Path(entry["cache"]))


def build_model(recipe: FinetuneRecipe, payload: dict):
    import torch
    from transformers import AutoModelForCausalLM

    from pipelines.stagekit.model_options import apply_gradient_checkpointing, worker_attn_implementation

    folder = base_folder(payload["base"])
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation=worker_attn_implementation(recipe)
    )
    model.config.use_cache = False
    apply_gradient_checkpointing(model, recipe, adapters=recipe.lora.enabled)
    if not recipe.lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.training.seed)  # the same adapter initialisation on every worker
    lora = recipe.lora
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def sft_loss(model, raw, batch: dict, recipe) -> tuple:
    kwargs = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]  # packed rows: attention stays per example
    else:
        kwargs["attention_mask"] = batch["attention_mask"]
    loss = model(**kwargs).loss
    return loss, int(batch["input_ids"].numel()), {}


def sequence_logps(model, input_ids, attention_mask, labels):
    """Sum of log-probabilities of the labelled tokens of each row."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE
    safe = targets.masked_fill(~mask, 0)
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (logps * mask).sum(-1), mask.sum(-1)


def dpo_loss(model, raw, batch: dict, recipe) -> tuple:
    import torch
    import torch.nn.functional as F

    ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
    mask = torch.cat([batch["chosen_attention_mask"], batch["rejected_attention_mask"]])
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    n = batch["chosen_input_ids"].shape[0]
    policy, _ = sequence_logps(model, ids, mask, labels)
    with torch.no_grad(), raw.disable_adapter():
        reference, _ = sequence_logps(raw, ids, mask, labels)
    beta = recipe.dpo.beta
    chosen_reward = beta * (policy[:n] - reference[:n])
    rejected_reward = beta * (policy[n:] - reference[n:])
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    extras = {
        "rewards_chosen": float(chosen_reward.detach().mean()),
        "rewards_rejected": float(rejected_reward.detach().mean()),
        "rewards_margin": float(margin.detach().mean()),
        "rewards_accuracy": float((margin > 0).float().mean()),
    }
    return loss, int(ids.numel()), extras


def export(raw, out: Path, recipe: FinetuneRecipe, payload: dict) -> None:
    """A Hugging Face model folder, or with ``lora.merge: false`` a PEFT adapter folder
    (``adapter_config.json`` and ``adapter_model.safetensors``) that names its registered base."""
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    base = payload["base"]
    folder = base_folder(base)
    model = raw
    if recipe.lora.enabled and recipe.lora.merge:
        model = raw.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(str(out), safe_serialization=True)
    record = {"stage": recipe.kind, "base_model": recipe.base_model, "lora": recipe.lora.model_dump()}
    if recipe.adapter_only:
        record["adapter_of"] = base_label(base)
        _name_base(out / "adapter_config.json", record["adapter_of"])
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(out))
    if (folder / "generation_config.json").is_file():
        (out / "generation_config.json").write_text((folder / "generation_config.json").read_text())
    (out / "lathe_finetune.json").write_text(json.dumps(record))


def base_label(entry: dict) -> str:
    """``NAME/VERSION`` of a registered base, the folder of a local one."""
    return f"{entry['name']}/{entry['version']}" if "name" in entry else entry["path"]


def _name_base(config_file: Path, label: str) -> None:
    """PEFT writes the worker's download folder as the base; the registered version is what lasts."""
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = f"models:/{label}"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))


SFT_HOOKS = StageHooks(build_model=build_model, loss=sft_loss, export=export)
DPO_HOOKS = StageHooks(build_model=build_model, loss=dpo_loss, export=export)
