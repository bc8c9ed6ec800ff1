"""Logging a curation run to MLflow: recipe, counts, report, and the output as a dataset.

The dataset (``mlflow.data``) is what a training run later names as its input, so a
registered model can say which curated data it came from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.curation.config import CurationConfig


def log_to_mlflow(config: CurationConfig, recipe: Path, report: Path, data: dict, tracking_uri: str):
    """Log the run; its MLflow ``RunInfo`` (run and experiment ids)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run(run_name=config.name) as run:
        mlflow.log_params(
            {
                "input": config.input.path,
                "output": config.output,
                "near_dedup": f"{config.stages.near_dedup.unit}-{config.stages.near_dedup.ngram}gram "
                f"{config.stages.near_dedup.bands}x{config.stages.near_dedup.rows} "
                f"t={config.stages.near_dedup.threshold}",
                "stages": ",".join(name for name, stage in config.stages.model_dump().items() if stage.get("enabled")),
            }
        )
        mlflow.log_metrics(
            {
                "documents_in": data["documents_in"],
                "documents_kept": data["documents_kept"],
                **{f"dropped_{stage}": n for stage, n in data["dropped_by_stage"].items()},
                **{f"pii_{kind}": n for kind, n in data["pii_redacted"].items()},
                "near_duplicate_clusters": data["near_duplicate_clusters"],
            }
        )
        mlflow.log_artifact(str(recipe), artifact_path="recipe")
        mlflow.log_artifact(str(report), artifact_path="report")
        mlflow.log_artifact(str(report.parent / "summary.json"), artifact_path="report")
        kept = pd.concat([pd.read_parquet(f, columns=["id", "text"]) for f in data["data_files"]], ignore_index=True)
        dataset = mlflow.data.from_pandas(
            kept, source=str(Path(config.output).resolve() / "data"), name=config.mlflow.dataset_name
        )
        mlflow.log_input(dataset, context="curation-output")
        mlflow.set_tag("lathe.stage", "curation")
        return run.info
