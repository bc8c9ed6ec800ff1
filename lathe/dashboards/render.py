"""Draw every dashboard from Prometheus into a folder of HTML pages, and say what had data.

    boards = load_dashboards(Path("deploy/grafana"))
    with PrometheusClient(url, hint="the port is LATHE_PROMETHEUS_PORT") as client:
        report = render_dashboards(boards, client, since_s=1800, step_s=None, out=Path(".lathe/dashboards"))
    report["dashboards"][0]["empty_panels"]      # titles of panels whose queries returned no series

The report is what ``lathe dashboards render --json`` prints.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from lathe.dashboards.evaluate import dashboard_variables, evaluate_dashboard
from lathe.dashboards.figures import DRAWERS
from lathe.dashboards.grafana import Dashboard
from lathe.dashboards.page import PageContext, dashboard_page, index_page
from lathe.dashboards.prometheus import PrometheusClient
from lathe.dashboards.variables import Window, format_duration
from lathe.errors import ConfigError


def default_dashboards_dir() -> Path:
    """The dashboards the Helm chart ships: ``deploy/grafana`` of this checkout."""
    import lathe

    checkout = Path(lathe.__file__).resolve().parents[1] / "deploy" / "grafana"
    return checkout if checkout.is_dir() else Path("deploy/grafana")


def render_dashboards(
    boards: list[Dashboard],
    client: PrometheusClient,
    since_s: float,
    step_s: float | None,
    out: Path,
    now: float | None = None,
) -> dict[str, Any]:
    """Query, draw and write one page per dashboard plus ``index.html``; return the report."""
    window = Window.last(since_s, step_s, client.scrape_interval(), now)
    context = PageContext(
        prometheus=client.url,
        since=format_duration(since_s),
        step=format_duration(window.step),
        rate_interval=format_duration(window.rate_interval),
        scrape_interval=format_duration(window.scrape_interval),
        drawn_at=datetime.fromtimestamp(window.end).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot make the folder {out} ({exc.strerror})", param="--out") from None
    entries = [_render_one(board, client, window, context, out) for board in boards]
    index = out / "index.html"
    index.write_text(index_page(entries, context))
    return {
        "prometheus": client.url,
        "since": context.since,
        "step": context.step,
        "rate_interval": context.rate_interval,
        "scrape_interval": context.scrape_interval,
        "start": datetime.fromtimestamp(window.start).astimezone().isoformat(),
        "end": datetime.fromtimestamp(window.end).astimezone().isoformat(),
        "out": str(out),
        "index": str(index),
        "dashboards": [{k: v for k, v in e.items() if k != "page_name"} for e in entries],
        "panels_total": sum(e["panels_total"] for e in entries),
        "panels_with_data": sum(e["panels_with_data"] for e in entries),
    }


def _render_one(
    board: Dashboard, client: PrometheusClient, window: Window, context: PageContext, out: Path
) -> dict[str, Any]:
    variables = dashboard_variables(board, client, window)
    results = evaluate_dashboard(board, client, window, variables)
    page = out / f"{board.slug}.html"
    page.write_text(dashboard_page(board, {id(r.panel): r for r in results}, variables, context))
    panels = [{**r.summary(), "drawn": r.panel.type in DRAWERS} for r in results]
    return {
        "file": board.path.name,
        "uid": board.uid,
        "title": board.title,
        "page": str(page),
        "page_name": page.name,
        "panels_total": len(panels),
        "panels_with_data": sum(1 for p in panels if not p["empty"]),
        "empty_panels": [p["title"] for p in panels if p["empty"]],
        "panels": panels,
    }
