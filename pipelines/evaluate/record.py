"""An evaluation's MLflow run: its parameters, metrics, recipe and per-item tables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.evaluate.config import EvaluateRecipe


def log_run(
    recipe: EvaluateRecipe,
    recipe_path: str | Path | None,
    summary: dict[str, Any],
    metrics: dict[str, float],
    tables: dict[str, list[dict]],
    uri: str,
) -> Any:
    """The MLflow run's info (run and experiment ids)."""
    import mlflow
    import yaml

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(recipe.mlflow.experiment)
    tags = {"lathe.stage": "evaluate"}
    if summary["model_version"]:
        tags["lathe.eval.model"] = f"{summary['model_name']}/{summary['model_version']}"
    with mlflow.start_run(run_name=recipe.name, tags=tags) as run:
        params = {
            "model": recipe.model,
            "model_version": summary["model_version"] or "local",
            "perplexity_texts": recipe.perplexity.texts if recipe.perplexity.enabled else "disabled",
            "seq_len": recipe.perplexity.seq_len,
            "max_documents": recipe.perplexity.max_documents,
            "task_questions": recipe.task.questions if recipe.task.enabled else "disabled",
            "max_tokens": recipe.task.max_tokens,
        }
        if "judge" in summary:
            judge = summary["judge"]
            params.update(judge_against=f"{recipe.judge.against} v{judge['champion_version']}",
                          judge_model=judge["judge_model"], judge_template=judge["template"])  # fmt: skip
        if recipe.task.enabled:
            params.update(
                endpoint=summary["endpoint"],
                endpoint_model=summary["endpoint_model"],
                served_versions=",".join(summary["served_versions"]) or "unknown",
            )
        if "lm_eval" in summary:
            params.update(lm_eval_version=summary["lm_eval"]["version"], lm_eval_tasks=",".join(recipe.lm_eval.tasks),
                          lm_eval_api=recipe.lm_eval.api)  # fmt: skip
            mlflow.log_dict(summary["lm_eval"], "eval/lm_eval/results.json")
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        if recipe_path is not None:
            mlflow.log_artifact(str(recipe_path), artifact_path="recipe")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{recipe.name}.yaml"
                path.write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False))
                mlflow.log_artifact(str(path), artifact_path="recipe")
        for artifact, rows in tables.items():
            if rows:
                columns = {key: [row[key] for row in rows] for key in rows[0]}
                mlflow.log_table(data=columns, artifact_file=artifact)
        return run.info
