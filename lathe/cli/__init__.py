"""The ``lathe`` command line.

    lathe up | down | status [--json]
    lathe models list | versions NAME | register PATH --name NAME | show NAME@ALIAS
    lathe models promote NAME [--version N] [--if-better-than ALIAS --metric M --margin X | --policy F] [--canary PCT]
    lathe keys create NAME [--models m1,m2 --rpm N --tpm N --budget N --expires DATE --guardrail pii:mask
                            --team T --spend-budget 5/day --cache exact|semantic] | list | usage NAME | revoke NAME
    lathe teams create NAME [--spend-budget 50/month] | list | usage NAME [--json]
    lathe audit [--since 1h --key NAME --limit N --json]
    lathe data curate --config RECIPE [--input PATH --output DIR]
    lathe train submit RECIPE [--set FIELD=VALUE --address URL --no-wait --json] | list | logs JOB_ID
    lathe pipeline run FILE [--set STAGE.FIELD=VALUE --from STAGE --to STAGE --json --k8s --dry-run] | status | logs
    lathe chat "Hello"
    lathe cluster status [--namespace NS --json]; lathe train submit RECIPE --k8s [--namespace NS]
    lathe agent ask "What is 17 * 23?" [--agent NAME --session ID --tool-choice TOOL --json] | tools
    lathe rag ingest PATH|URL... [--collection C] | ask "…" | retrieve "…" | eval --questions FILE
    lathe demo [--size full|ci --json]   (the whole loop, ending with a summary table)
    lathe dashboards render [--since 30m --step auto --out DIR --prometheus URL --json --fail-on-empty]

Every command turns a ``LatheError`` into one line on stderr and a non-zero exit.
Heavy imports (MLflow, torch) happen inside the commands that need them, so
``lathe --help`` answers at once.
"""

from __future__ import annotations

import sys

import typer

from lathe.cli import agent, chat, cluster, dashboards, data, demo, keys, models, pipeline, platform, teams, train
from lathe.cli import audit as audit_cli
from lathe.cli import rag as rag_cli
from lathe.cli.output import run_guarded

app = typer.Typer(
    name="lathe",
    help="Lathe: curate, train, register, serve and watch language models — on a laptop or a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
platform.register(app)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(teams.app, name="teams")
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(cluster.app, name="cluster")
app.add_typer(agent.app, name="agent")
app.add_typer(rag_cli.app, name="rag")
app.add_typer(dashboards.app, name="dashboards")
chat.register(app)
demo.register(app)
audit_cli.register(app)


def main() -> None:
    run_guarded(app, sys.argv[1:])
