"""``python -m pipelines.flow run FILE``: the command every pipeline run executes, locally and as a RayJob.

    python -m pipelines.flow run pipelines/demo.yaml [--set STAGE.FIELD=VALUE] [--from STAGE] [--to STAGE]
                                 [--run-id RUN] [--check]

``--check`` runs every check that needs no stage to have run (the file, its references,
the recipes' fields, the storage, recorded outputs for ``--from``, GPUs) and stops. A
problem is one line on stderr, ``pipeline: <message>``, with exit code 2 for
configuration.
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.flow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline file's stages in order")
    run.add_argument("file", help="the pipeline (YAML)")
    run.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=VALUE", help="override a value")
    run.add_argument("--from", dest="start", help="start at this stage, with the outputs the run recorded")
    run.add_argument("--to", dest="stop", help="stop after this stage")
    run.add_argument("--run-id", help="the run to record into (default: a new one; with --from: the latest)")
    run.add_argument("--check", action="store_true", help="run the checks, then stop")
    run.add_argument("--offline", action="store_true", help="with --check: only what needs no storage or cluster")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from lathe.errors import LatheError
    from pipelines.flow.driver import execute, prepare_run
    from pipelines.flow.spec import load_pipeline
    from pipelines.stagekit.settings import load_pipeline_settings

    try:
        settings = load_pipeline_settings()
        pipeline = load_pipeline(args.file, args.set)
        if args.check and args.offline:
            selected = pipeline.select(args.start, args.stop)
            pipeline.check_recipes()
            print(f"pipeline {args.file} is valid: {', '.join(selected)}")
            return 0
        run, selected = prepare_run(pipeline, settings, start=args.start, stop=args.stop, run_id=args.run_id)
    except LatheError as exc:
        print(f"pipeline: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    if args.check:
        print(f"pipeline {args.file} is valid: {', '.join(selected)}; run {run.run_id} in {run.storage.root}")
        return 0
    return execute(run, selected)


if __name__ == "__main__":
    sys.exit(main())
