"""``lathe dashboards …``: the Grafana dashboards drawn from Prometheus into HTML, no Grafana needed.

    lathe dashboards render [--since 30m] [--step auto] [--out DIR] [--prometheus URL] [--json] [--fail-on-empty]

Reads the dashboards the Helm chart ships (deploy/grafana/*.json), runs every panel's
PromQL against the local Prometheus (``lathe up`` starts it; its port is
LATHE_PROMETHEUS_PORT) and writes one self-contained page per dashboard plus
``index.html``. It prints one line per dashboard (panels, panels with data) and names
the panels that had none.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lathe.cli.output import console, err_console, print_json, settings

app = typer.Typer(
    help="Grafana's dashboards drawn from Prometheus into HTML pages, no Grafana needed.", no_args_is_help=True
)


@app.command("render")
def render(
    since: str = typer.Option("30m", "--since", help="How far back to draw, e.g. 30m, 2h, 1d."),
    step: str = typer.Option("auto", "--step", help="Seconds between points, e.g. 15s; auto: from the range."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the pages (default: $LATHE_HOME/dashboards)."),
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus base URL (default: the local one, port LATHE_PROMETHEUS_PORT)."
    ),
    dashboards: Path | None = typer.Option(
        None, "--dashboards", help="Folder of Grafana dashboard JSON (default: deploy/grafana)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print every panel's queries, series and empty flag."),
    fail_on_empty: bool = typer.Option(False, "--fail-on-empty", help="Exit 1 when any panel returned no series."),
) -> None:
    """Run every panel's queries against Prometheus and write one HTML page per dashboard."""
    from lathe.dashboards.grafana import load_dashboards
    from lathe.dashboards.prometheus import PrometheusClient
    from lathe.dashboards.render import default_dashboards_dir, render_dashboards
    from lathe.dashboards.variables import parse_duration
    from lathe.errors import ConfigError

    if prometheus is not None and not prometheus.startswith(("http://", "https://")):
        raise ConfigError(f"--prometheus: {prometheus!r} is not a URL (write it like http://127.0.0.1:9090)")
    since_s = parse_duration(since, "--since")
    step_s = None if step == "auto" else parse_duration(step, "--step")
    s = settings()
    boards = load_dashboards(dashboards or default_dashboards_dir())
    url = prometheus or f"http://127.0.0.1:{s.prometheus.port}"
    hint = (
        "check the URL given to --prometheus"
        if prometheus
        else "the local Prometheus listens on LATHE_PROMETHEUS_PORT; start it with `lathe up`, or pass --prometheus URL"
    )
    with PrometheusClient(url, hint=hint) as client:
        report = render_dashboards(boards, client, since_s, step_s, out or s.home / "dashboards")
    if json_output:
        print_json(report)
    else:
        _print(report)
    empty = report["panels_total"] - report["panels_with_data"]
    if fail_on_empty and empty:
        err_console.print(f"{empty} panel(s) returned no series (--fail-on-empty)", highlight=False)
        raise typer.Exit(1)


def _print(report: dict) -> None:
    width = max(len(d["title"]) for d in report["dashboards"])
    for board in report["dashboards"]:
        colour = "green" if not board["empty_panels"] else "yellow"
        console.print(
            f"{board['title']:<{width}}  [{colour}]{board['panels_total']} panels, "
            f"{board['panels_with_data']} with data[/]  {board['page']}",
            highlight=False,
            soft_wrap=True,
        )
        for title in board["empty_panels"]:
            console.print(f"  no data: {title}", highlight=False, soft_wrap=True)
    console.print(
        f"index: {report['index']} (last {report['since']}, step {report['step']}, Prometheus {report['prometheus']})",
        highlight=False,
        soft_wrap=True,
    )
