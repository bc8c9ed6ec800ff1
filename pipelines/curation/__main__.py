"""Curate a corpus: ``python -m pipelines.curation --config pipelines/recipes/curation.yaml``.

The same command runs on a laptop (a local Ray) and as a Ray job on a cluster
(``ray job submit -- python -m pipelines.curation --config …``). ``--input`` and
``--output`` override the recipe's paths. It ends with a summary table, an HTML report
in the output folder, and (unless ``mlflow.enabled: false``) an MLflow run that holds
the report and the output dataset. ``--json`` prints the summary as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.curation", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe (YAML)")
    parser.add_argument("--input", help="override input.path")
    parser.add_argument("--output", help="override output")
    parser.add_argument("--ray-address", help="Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check", action="store_true", help="validate the recipe and inputs, then stop")
    args = parser.parse_args(argv)

    from lathe.errors import LatheError
    from lathe.registry import ModelRegistry
    from pipelines.stagekit.settings import load_pipeline_settings

    try:
        from pipelines.curation.config import load_config

        settings = load_pipeline_settings()
        config = load_config(args.config, input_path=args.input, output=args.output)
        tracking_uri = settings.tracking_uri()
        if config.mlflow.enabled:
            ModelRegistry(tracking_uri).ping()  # before any worker starts, not after the work

        from pipelines.curation.job import preflight, run_curation

        preflight(config)
        if args.check:
            print(f"recipe {args.config} is valid")
            return 0
        from pipelines.curation.pii_eval import evaluate
        from pipelines.curation.report import write_report

        result = run_curation(config, ray_address=args.ray_address or settings.ray_address)
        report = result.output / "report.html"
        data = write_report(result, evaluate(), report)
        if config.mlflow.enabled:
            from pipelines.curation.tracking import log_to_mlflow

            data["mlflow_run_id"] = log_to_mlflow(config, Path(args.config), report, data, tracking_uri)
            (result.output / "summary.json").write_text(json.dumps(data, indent=2))
    except LatheError as exc:
        print(f"curation: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_summary(data, report)
    return 0


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
