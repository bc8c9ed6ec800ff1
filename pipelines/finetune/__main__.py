"""Fine-tune a registered model: ``python -m pipelines.finetune --config pipelines/recipes/sft-lora-smollm2.yaml``.

``kind: sft`` trains on chat examples with loss on assistant tokens only (packed or
padded); ``kind: dpo`` trains on preference pairs with the DPO loss. Both use LoRA by
default (full fine-tuning with ``lora.enabled: false`` for SFT), run on Ray Train like
pre-training, merge the adapters and register the result with its base model's version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_jsonl(path: str, field_name: str, limit: int | None) -> list[dict]:
    from lathe.errors import ConfigError

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{field_name}: {file} does not exist (build the demo data with `make demo-train`)")
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{field_name}: {file} line {number} is not JSON ({exc.msg})") from None
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise ConfigError(f"{field_name}: {file} holds no examples")
    return rows


def _check_rows(rows: list[dict], kind: str, path: str) -> None:
    from lathe.errors import ConfigError

    need = ("messages",) if kind == "sft" else ("prompt", "chosen", "rejected")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in need if key not in row]
        if missing:
            raise ConfigError(f"data.path: {path} example {number} lacks {', '.join(missing)} (a {kind} example)")


def prepare(recipe, context):
    import pandas as pd

    from lathe.settings import load_settings
    from pipelines.finetune.chat import encode_chat, pack, pad
    from pipelines.finetune.stage import DPO_HOOKS, SFT_HOOKS, resolve_base
    from pipelines.stagekit.sizing import check_batches, check_memory, flops_per_token, parameter_count
    from pipelines.stagekit.train_runner import StageRun

    rows = read_jsonl(recipe.data.path, "data.path", recipe.data.max_examples)
    _check_rows(rows, recipe.kind, recipe.data.path)
    tracking_uri = context.tracking_uri(recipe)
    entry, folder, base_label = resolve_base(recipe, tracking_uri, load_settings().home.resolve() / "models")

    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = AutoConfig.from_pretrained(str(folder))
    n_params = parameter_count(config)
    trainable = n_params if not recipe.lora.enabled else max(1, n_params // 100)
    check_memory(recipe, n_params, trainable, config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seq_len = recipe.training.seq_len
    if recipe.kind == "sft":
        examples = [encode_chat(tokenizer, row["messages"]) for row in rows]
        arrays = pack(examples, seq_len, pad_id) if recipe.packing else pad(examples, seq_len, pad_id)
        hooks = SFT_HOOKS
        what = "packed rows" if recipe.packing else "examples"
    else:
        chosen = [encode_chat(tokenizer, [*r["prompt"], {"role": "assistant", "content": r["chosen"]}]) for r in rows]
        rejected = [
            encode_chat(tokenizer, [*r["prompt"], {"role": "assistant", "content": r["rejected"]}]) for r in rows
        ]
        arrays = {**pad(chosen, seq_len, pad_id, "chosen_"), **pad(rejected, seq_len, pad_id, "rejected_")}
        hooks = DPO_HOOKS
        what = "preference pairs"
    count = len(next(iter(arrays.values())))
    check_batches(recipe, count, what)
    print(f"{recipe.kind}: base {base_label or folder}, {len(rows)} examples -> {count} {what}", flush=True)
    from pipelines.stagekit.text_data import mlflow_dataset

    frame = pd.DataFrame({"id": [str(i) for i in range(len(rows))], "text": [json.dumps(r) for r in rows]})
    dataset = mlflow_dataset(frame, recipe.data.path, recipe.data.dataset_name)
    return StageRun(
        stage=recipe.kind,
        recipe=recipe,
        recipe_path=context.recipe_path,
        hooks=hooks,
        arrays=arrays,
        payload={"base": entry},
        flops_per_token=flops_per_token(n_params, config, seq_len, weight_grads=not recipe.lora.enabled),
        datasets=[dataset],
        params={"parameters": str(n_params), "train_rows": str(count)},
        base_model=base_label,
    )


def main(argv: list[str] | None = None) -> int:
    from pipelines.finetune.config import FinetuneRecipe
    from pipelines.stagekit.entry import stage_main
    from pipelines.stagekit.train_runner import training_stage

    return stage_main(training_stage("finetune", __doc__, FinetuneRecipe, prepare), argv)


if __name__ == "__main__":
    sys.exit(main())
