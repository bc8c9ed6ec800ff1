"""Train the tokenizer: ``python -m pipelines.tokenizer --config pipelines/recipes/tokenizer.yaml``.

Byte-level BPE (Hugging Face ``tokenizers``) trained on the curated Parquet, with the
recipe's vocabulary size, special tokens and chat template; saved as a Hugging Face
tokenizer folder (``output``) and logged to MLflow with the dataset it was trained on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe (YAML)")
    parser.add_argument("--output", help="override output")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a recipe field")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check", action="store_true", help="validate the recipe and inputs, then stop")
    args = parser.parse_args(argv)

    from lathe.errors import LatheError
    from pipelines.stagekit.settings import load_pipeline_settings

    try:
        settings = load_pipeline_settings()
        from pipelines.stagekit.cli import parse_sets
        from pipelines.stagekit.recipes import load_recipe
        from pipelines.stagekit.text_data import load_texts, mlflow_dataset
        from pipelines.tokenizer.config import TokenizerRecipe

        overrides = parse_sets(args.set)
        if args.output:
            overrides["output"] = args.output
        recipe = load_recipe(TokenizerRecipe, args.config, overrides)
        frame = load_texts(recipe.data.path, recipe.data.text_field, "data.path", recipe.data.max_documents)
        tracking_uri = _tracking_uri(recipe, settings.tracking_uri)
        if args.check:
            print(f"recipe {args.config} is valid ({len(frame)} documents)")
            return 0
        from pipelines.stagekit.train_runner import print_summary
        from pipelines.tokenizer.train import save, train_tokenizer

        fast, stats = train_tokenizer(recipe, frame)
        out = save(fast, recipe.output)
        run_id = None
        if tracking_uri:
            import mlflow

            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "1")
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_experiment(recipe.mlflow.experiment)
            with mlflow.start_run(run_name=recipe.name) as run:
                mlflow.log_params({"vocab_size": recipe.vocab_size, "min_frequency": recipe.min_frequency})
                mlflow.log_metrics(stats)
                mlflow.log_artifact(args.config, artifact_path="recipe")
                mlflow.log_artifacts(str(out), artifact_path="tokenizer")
                mlflow.log_input(mlflow_dataset(frame, recipe.data.path, recipe.data.dataset_name), context="training")
                mlflow.set_tags({"lathe.stage": "tokenizer", "lathe.recipe": Path(args.config).name})
                run_id = run.info.run_id
    except LatheError as exc:
        print(f"tokenizer: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    summary = {
        "stage": "tokenizer",
        "name": recipe.name,
        "status": "FINISHED",
        "run_id": run_id,
        "model_name": None,
        "model_version": None,
        "model_path": str(out),
        "steps": 0,
        "seconds": round(stats["train_seconds"], 1),
        "metrics": stats,
    }
    print_summary(summary, args.json, settings.result_only)
    return 0


def _tracking_uri(recipe, configured) -> str | None:
    if not recipe.mlflow.enabled:
        return None
    from lathe.registry import ModelRegistry

    uri = configured()
    ModelRegistry(uri).ping()  # before the work, not after it
    return uri


if __name__ == "__main__":
    sys.exit(main())
