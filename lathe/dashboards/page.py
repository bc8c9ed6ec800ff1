"""Self-contained HTML pages: one per dashboard, laid out on Grafana's grid, and an index.

Each page embeds plotly.js itself (no CDN, no network): open it from disk anywhere.
Panels sit on a CSS grid of 24 columns and 30 px rows, as Grafana places them; a row
becomes a heading over its own grid. A panel whose queries returned nothing says
"No data" (with Prometheus's message when it refused a query); a panel type this page
does not draw says so in its box.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from lathe.dashboards.evaluate import PanelResult
from lathe.dashboards.figures import DRAWERS, PANEL_BG, TEXT, draw
from lathe.dashboards.grafana import GRID_COLUMNS, GRID_GAP_PX, GRID_ROW_PX, Dashboard, Panel, Section, grid_area

_CSS = f"""
body {{ background: #111217; color: {TEXT}; font: 13px/1.4 Inter, "Helvetica Neue", Arial, sans-serif;
       margin: 0; padding: 16px 24px; }}
a {{ color: #6e9fff; }}
header h1 {{ font-size: 20px; font-weight: 500; margin: 0 0 4px; }}
header p {{ margin: 2px 0; color: #9fa7b3; }}
h2.row-title {{ font-size: 15px; font-weight: 500; margin: 20px 0 8px; }}
h2.row-title span {{ color: #9fa7b3; font-size: 12px; font-weight: 400; }}
.grid {{ display: grid; grid-template-columns: repeat({GRID_COLUMNS}, minmax(0, 1fr));
        grid-auto-rows: {GRID_ROW_PX}px; gap: {GRID_GAP_PX}px; margin-top: 12px; }}
.panel {{ background: {PANEL_BG}; border: 1px solid #2c3235; border-radius: 2px; display: flex;
         flex-direction: column; min-width: 0; overflow: hidden; }}
.panel-title {{ padding: 6px 8px 2px; font-weight: 500; white-space: nowrap; overflow: hidden;
               text-overflow: ellipsis; }}
.panel-body {{ flex: 1; min-height: 0; position: relative; }}
.message {{ display: flex; align-items: center; justify-content: center; text-align: center; padding: 8px;
           color: #9fa7b3; }}
.message.error {{ color: #ff7383; font-family: monospace; font-size: 11px; }}
.message.not-drawn {{ border: 2px dashed #ff9830; margin: 6px; color: #ff9830; }}
.text-panel {{ white-space: pre-wrap; padding: 4px 8px; overflow: auto; }}
table.index td, table.index th {{ padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }}
"""


@dataclass
class PageContext:
    """What the header of every page says: where the numbers came from and over which window."""

    prometheus: str
    since: str
    step: str
    rate_interval: str
    scrape_interval: str
    drawn_at: str


def dashboard_page(
    board: Dashboard, results: dict[int, PanelResult], variables: dict[str, str], context: PageContext
) -> str:
    """The page of one dashboard; ``results`` maps ``id(panel)`` to what its queries returned."""
    from plotly.offline import get_plotlyjs

    figures: dict[str, Any] = {}
    sections = "\n".join(_section(section, results, figures) for section in board.sections)
    shown = [f"${name} = {value}" for name, value in variables.items() if not name.startswith("__")]
    header = (
        f"<header><h1>{_e(board.title)}</h1>"
        f"<p>last {_e(context.since)} · step {_e(context.step)} · $__rate_interval {_e(context.rate_interval)}"
        f" (scrape interval {_e(context.scrape_interval)}) · Prometheus {_e(context.prometheus)}"
        f" · drawn {_e(context.drawn_at)}</p>"
        + (f"<p>{_e(' · '.join(shown))}</p>" if shown else "")
        + f'<p><a href="index.html">all dashboards</a> · from {_e(board.path.name)}</p></header>'
    )
    script = (
        "const figures = " + _json(figures) + ";\n"
        "for (const [id, figure] of Object.entries(figures)) {\n"
        "  Plotly.newPlot(id, figure.data, figure.layout, {displayModeBar: false, responsive: true});\n"
        "}\n"
    )
    return _document(board.title, header + sections, f"<script>{get_plotlyjs()}</script>\n<script>{script}</script>")


def index_page(entries: list[dict[str, Any]], context: PageContext) -> str:
    """Links to every dashboard page with how many of its panels had data."""
    rows = []
    for entry in entries:
        empty = ", ".join(entry["empty_panels"]) or "—"
        rows.append(
            f'<tr><td><a href="{_e(entry["page_name"])}">{_e(entry["title"])}</a></td>'
            f"<td>{entry['panels_with_data']} / {entry['panels_total']}</td><td>{_e(empty)}</td></tr>"
        )
    body = (
        "<header><h1>Lathe dashboards</h1>"
        f"<p>last {_e(context.since)} · Prometheus {_e(context.prometheus)} · drawn {_e(context.drawn_at)}</p></header>"
        '<table class="index"><tr><th>dashboard</th><th>panels with data</th><th>no data</th></tr>'
        + "".join(rows)
        + "</table>"
    )
    return _document("Lathe dashboards", body, "")


def _section(section: Section, results: dict[int, PanelResult], figures: dict[str, Any]) -> str:
    heading = ""
    if section.title is not None:
        note = " <span>(a collapsed row in Grafana)</span>" if section.collapsed else ""
        heading = f'<h2 class="row-title">{_e(section.title)}{note}</h2>'
    panels = "".join(_panel(panel, section.top, results.get(id(panel)), figures) for panel in section.panels)
    grid = f'<div class="grid">{panels}</div>' if panels else ""
    return f"<section>{heading}{grid}</section>"


def _panel(panel: Panel, top: int, result: PanelResult | None, figures: dict[str, Any]) -> str:
    element_id = f"panel-{len(figures) + 1}-{panel.id or 0}"
    queries = "\n".join(q.expr for q in result.queries) if result else ""
    empty = result is not None and result.empty
    if panel.type == "text":
        body = f'<div class="panel-body text-panel">{_e(str(panel.options.get("content") or ""))}</div>'
    elif panel.type not in DRAWERS or result is None:
        found = f" ({len(result.series_with_data)} series returned)" if result else ""
        body = f'<div class="panel-body message not-drawn">panel type "{_e(panel.type)}" not drawn{found}</div>'
    elif empty:
        errors = result.errors
        css = "message error" if errors else "message"
        body = f'<div class="panel-body {css}">{_e("; ".join(errors) if errors else "No data")}</div>'
    else:
        figures[element_id] = draw(result)
        body = f'<div class="panel-body" id="{element_id}"></div>'
    return (
        f'<div class="panel" style="{grid_area(panel.grid, top)}" data-type="{_e(panel.type)}"'
        f' data-empty="{str(empty).lower()}" title="{_e(queries)}">'
        f'<div class="panel-title">{_e(panel.title)}</div>{body}</div>'
    )


def _document(title: str, body: str, scripts: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>{body}\n{scripts}</body></html>\n"
    )


def _json(data: Any) -> str:
    from plotly.utils import PlotlyJSONEncoder

    # "<" never appears raw inside a <script>: no "</script>" or "<!--" can end it early.
    return json.dumps(data, cls=PlotlyJSONEncoder).replace("<", "\\u003c")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
