"""Curate a corpus: ``python -m pipelines.curation --config pipelines/recipes/curation.yaml``.

The same command runs on a laptop (a local Ray) and as a Ray job on a cluster
(``ray job submit -- python -m pipelines.curation --config …``). ``--input`` and
``--output`` override the recipe's paths. It ends with a summary table, an HTML report
in the output folder, and (unless ``mlflow.enabled: false``) an MLflow run that holds
the report and the output dataset. ``--json`` prints the summary as JSON instead.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CurationWork:
    config: Any
    tracking_uri: str | None


def prepare(config, context) -> tuple[CurationWork, str]:
    from pipelines.curation.reading import preflight

    tracking_uri = context.tracking_uri(config)
    preflight(config)
    return CurationWork(config, tracking_uri), ""


def run(work: CurationWork, context):
    from lathe.jobs import StageResult
    from pipelines.curation.job import run_curation
    from pipelines.curation.pii_eval import evaluate
    from pipelines.curation.report import write_report
    from pipelines.stagekit.entry import StageOutcome

    config = work.config
    result = run_curation(config, ray_address=context.ray_address)
    report = result.output / "report.html"
    data = write_report(result, evaluate(), report)
    url = None
    if work.tracking_uri:
        from lathe.jobs import run_url
        from pipelines.curation.tracking import log_to_mlflow

        run_info = log_to_mlflow(config, context.recipe_path, report, data, work.tracking_uri)
        data["mlflow_run_id"] = run_info.run_id
        url = run_url(work.tracking_uri, run_info.experiment_id, run_info.run_id)
        (result.output / "summary.json").write_text(json.dumps(data, indent=2))
    figures = {
        "documents_in": data["documents_in"],
        "documents_kept": data["documents_kept"],
        **{f"dropped_{stage}": n for stage, n in data["dropped_by_stage"].items()},
        "near_duplicate_clusters": data["near_duplicate_clusters"],
        "flagged_contaminated": data["flagged_contaminated"],
    }
    stage_result = StageResult(
        stage="curation",
        name=config.name,
        run_id=data.get("mlflow_run_id"),
        mlflow_url=url,
        output=str(result.output),
        seconds=round(sum(t.seconds for t in result.timings), 1),
        metrics=figures,
    )
    return StageOutcome(stage_result, details=data)


def main(argv: list[str] | None = None) -> int:
    from pipelines.curation.config import CurationConfig
    from pipelines.stagekit.entry import Shortcut, Stage, stage_main

    def show(outcome):
        _print_summary(outcome.details, Path(outcome.result.output) / "report.html")

    shortcuts = (
        Shortcut("--input", "input.path", "override input.path"),
        Shortcut("--output", "output", "override output"),
    )
    return stage_main(Stage("curation", __doc__, CurationConfig, prepare, run, show, shortcuts), argv)


def _print_summary(data: dict, report: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Curation summary", title_justify="left")
    table.add_column("stage")
    table.add_column("documents", justify="right")
    table.add_row("read", str(data["documents_in"]))
    for stage, count in data["dropped_by_stage"].items():
        table.add_row(f"dropped: {stage}", str(count))
    table.add_row("[bold]kept[/]", f"[bold]{data['documents_kept']}[/]")
    console.print(table)
    pii = ", ".join(f"{k} {v}" for k, v in data["pii_redacted"].items() if v) or "none"
    console.print(f"PII redacted: {pii}")
    console.print(f"near-duplicate clusters: {data['near_duplicate_clusters']} (largest {data['largest_cluster']})")
    console.print(f"report: {report}")
    if data.get("mlflow_run_id"):
        console.print(f"MLflow run: {data['mlflow_run_id']}")


if __name__ == "__main__":
    sys.exit(main())
