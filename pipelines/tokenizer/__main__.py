"""Train the tokenizer: ``python -m pipelines.tokenizer --config pipelines/recipes/tokenizer.yaml``.

Byte-level BPE (Hugging Face ``tokenizers``) trained on the curated Parquet, with the
recipe's vocabulary size, special tokens and chat template; saved as a Hugging Face
tokenizer folder (``output``) and logged to MLflow with the dataset it was trained on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class TokenizerWork:
    recipe: Any
    frame: Any  # the training text: id and text columns
    tracking_uri: str | None


def prepare(recipe, context) -> tuple[TokenizerWork, str]:
    from pipelines.stagekit.text_data import load_texts

    frame = load_texts(recipe.data.path, recipe.data.text_field, "data.path", recipe.data.max_documents)
    tracking_uri = context.tracking_uri(recipe)
    return TokenizerWork(recipe, frame, tracking_uri), f" ({len(frame)} documents)"


def run(work: TokenizerWork, context):
    from lathe.jobs import StageResult, run_url
    from pipelines.stagekit.entry import StageOutcome
    from pipelines.tokenizer.train import save, train_tokenizer

    recipe = work.recipe
    fast, stats = train_tokenizer(recipe, work.frame)
    out = save(fast, recipe.output)
    run_id = url = None
    if work.tracking_uri:
        run_id, experiment_id = _log_run(work, stats, out, context.recipe_path)
        url = run_url(work.tracking_uri, experiment_id, run_id)
    result = StageResult(
        stage="tokenizer",
        name=recipe.name,
        run_id=run_id,
        mlflow_url=url,
        model_path=str(out),
        output=str(out),
        seconds=round(stats["train_seconds"], 1),
        metrics=stats,
    )
    return StageOutcome(result)


def _log_run(work: TokenizerWork, stats: dict, out, recipe_path) -> tuple[str, str]:
    import os

    import mlflow

    from pipelines.stagekit.text_data import mlflow_dataset

    recipe = work.recipe
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "1")
    mlflow.set_tracking_uri(work.tracking_uri)
    mlflow.set_experiment(recipe.mlflow.experiment)
    with mlflow.start_run(run_name=recipe.name) as run:
        mlflow.log_params({"vocab_size": recipe.vocab_size, "min_frequency": recipe.min_frequency})
        mlflow.log_metrics(stats)
        mlflow.log_artifact(str(recipe_path), artifact_path="recipe")
        mlflow.log_artifacts(str(out), artifact_path="tokenizer")
        mlflow.log_input(mlflow_dataset(work.frame, recipe.data.path, recipe.data.dataset_name), context="training")
        mlflow.set_tags({"lathe.stage": "tokenizer", "lathe.recipe": recipe_path.name})
        return run.info.run_id, run.info.experiment_id


def main(argv: list[str] | None = None) -> int:
    from pipelines.stagekit.entry import Shortcut, Stage, show_result_table, stage_main
    from pipelines.tokenizer.config import TokenizerRecipe

    output = Shortcut("--output", "output", "override output")
    stage = Stage("tokenizer", __doc__, TokenizerRecipe, prepare, run, show_result_table, (output,), uses_ray=False)
    return stage_main(stage, argv)


if __name__ == "__main__":
    sys.exit(main())
