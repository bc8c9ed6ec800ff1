"""Every panel's queries run against Prometheus, with what each returned.

    window = Window.last(1800, None, client.scrape_interval())
    results = evaluate_dashboard(board, client, window)
    [r.panel.title for r in results if r.empty]      # panels Grafana would show as "No data"

A panel is empty when none of its queries returned a series with a number in it (NaN
everywhere, as ``histogram_quantile`` gives over a window with no observations, counts as
no data), or when Prometheus refused one of its queries and the others returned nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lathe.dashboards.grafana import Dashboard, Panel, Target
from lathe.dashboards.prometheus import PrometheusClient, QueryError, Series
from lathe.dashboards.variables import Window, legend_name, substitute, variable_values


@dataclass
class NamedSeries:
    name: str
    series: Series


@dataclass
class QueryResult:
    target: Target
    expr: str  # as sent, variables substituted
    series: list[NamedSeries] = field(default_factory=list)
    error: str | None = None

    @property
    def with_data(self) -> list[NamedSeries]:
        return [s for s in self.series if s.series.has_data]


@dataclass
class PanelResult:
    panel: Panel
    queries: list[QueryResult]

    @property
    def series(self) -> list[NamedSeries]:
        return [s for q in self.queries for s in q.series]

    @property
    def series_with_data(self) -> list[NamedSeries]:
        return [s for q in self.queries for s in q.with_data]

    @property
    def empty(self) -> bool:
        return not self.series_with_data

    @property
    def errors(self) -> list[str]:
        return [f"{q.target.ref_id}: {q.error}" for q in self.queries if q.error]

    def summary(self) -> dict[str, Any]:
        """What ``lathe dashboards render --json`` prints for the panel."""
        return {
            "id": self.panel.id,
            "title": self.panel.title,
            "type": self.panel.type,
            "queries": [
                {
                    "ref_id": q.target.ref_id,
                    "expr": q.expr,
                    "legend_format": q.target.legend_format,
                    "series": len(q.series),
                    "series_with_data": len(q.with_data),
                    "error": q.error,
                }
                for q in self.queries
            ],
            "series": len(self.series_with_data),
            "empty": self.empty,
        }


def dashboard_variables(board: Dashboard, client: PrometheusClient, window: Window) -> dict[str, str]:
    """The text each variable of the dashboard stands for in its queries."""
    return variable_values(
        board.variables, window, lambda label, selector: client.label_values(label, selector, window.start, window.end)
    )


def evaluate_dashboard(
    board: Dashboard, client: PrometheusClient, window: Window, values: dict[str, str] | None = None
) -> list[PanelResult]:
    """Run the queries of every panel that shows data (rows and text panels have none)."""
    values = values if values is not None else dashboard_variables(board, client, window)
    return [
        PanelResult(panel, [run_target(target, values, client, window) for target in panel.targets])
        for panel in board.panels
        if panel.queries_data
    ]


def run_target(target: Target, values: dict[str, str], client: PrometheusClient, window: Window) -> QueryResult:
    expr = substitute(target.expr, values)
    result = QueryResult(target, expr)
    try:
        found = client.query_range(expr, window.start, window.end, window.step)
    except QueryError as exc:
        result.error = exc.one_line()
        return result
    result.series = sorted(
        (NamedSeries(legend_name(target.legend_format, s.labels, expr), s) for s in found), key=lambda s: s.name
    )
    return result
