"""Pre-train a Llama-style decoder: ``python -m pipelines.pretrain --config pipelines/recipes/pretrain-tiny.yaml``.

Runs on Ray Train (the local Ray, or the cluster of a Ray job): DDP over gloo on CPUs,
DeepSpeed ZeRO on GPUs (and on CPUs when the recipe asks). The curated text is
tokenized, packed into ``seq_len`` rows and trained with causal LM loss; the model is
logged with its tokenizer and registered (``mlflow.register_as``).
"""

from __future__ import annotations

import sys


def prepare(recipe, context):
    from pipelines.pretrain.stage import HOOKS, llama_config, load_tokenizer, tokenizer_files
    from pipelines.stagekit.sizing import check_batches, check_memory, flops_per_token, parameter_count
    from pipelines.stagekit.text_data import load_texts, mlflow_dataset, pack_tokens
    from pipelines.stagekit.train_runner import StageRun

    files = tokenizer_files(recipe.tokenizer)
    tokenizer = load_tokenizer(files)
    config = llama_config(recipe, tokenizer)
    n_params = parameter_count(config)
    check_memory(recipe, n_params, n_params, config)
    frame = load_texts(recipe.data.path, recipe.data.text_field, "data.path", recipe.data.max_documents)
    ids = tokenizer(frame["text"].tolist(), add_special_tokens=False)["input_ids"]
    rows = pack_tokens(ids, tokenizer.eos_token_id, recipe.training.seq_len)
    check_batches(recipe, len(rows), f"rows of {recipe.training.seq_len} tokens")
    print(
        f"pretrain: {n_params / 1e6:.2f}M parameters, {len(frame)} documents -> {len(rows)} rows "
        f"of {recipe.training.seq_len} tokens",
        flush=True,
    )
    return StageRun(
        stage="pretrain",
        recipe=recipe,
        recipe_path=context.recipe_path,
        hooks=HOOKS,
        arrays={"input_ids": rows},
        payload={"tokenizer_files": files},
        flops_per_token=flops_per_token(n_params, config, recipe.training.seq_len),
        datasets=[mlflow_dataset(frame, recipe.data.path, recipe.data.dataset_name)],
        params={"parameters": str(n_params), "train_rows": str(len(rows))},
    )


def main(argv: list[str] | None = None) -> int:
    from pipelines.pretrain.config import PretrainRecipe
    from pipelines.stagekit.entry import stage_main
    from pipelines.stagekit.train_runner import training_stage

    return stage_main(training_stage("pretrain", __doc__, PretrainRecipe, prepare), argv)


if __name__ == "__main__":
    sys.exit(main())
