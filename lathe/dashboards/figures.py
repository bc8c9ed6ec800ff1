"""Plotly figures for Grafana's panel types: timeseries, stat, gauge, bargauge and table.

    figure = draw(result)        # a Plotly figure as a dict, or None for a type not drawn here
    figure["data"], figure["layout"]

Values are reduced as Grafana's ``reduceOptions.calcs`` asks (last non-null by default),
written in the panel's unit (``lathe.dashboards.units``) and coloured by the panel's
thresholds. Axes carry tick labels in the unit (``1 ms``, ``2 GiB``, ``40%``), not raw numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from statistics import fmean
from typing import Any

import plotly.graph_objects as go

from lathe.dashboards.evaluate import NamedSeries, PanelResult
from lathe.dashboards.units import axis_ticks, format_number, format_value, scale

# Grafana's classic palette, in its order, and the names its thresholds use.
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0", "#37872D"]
NAMED_COLOURS = {"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A", "orange": "#FF9830",
                 "blue": "#5794F2", "purple": "#B877D9", "text": "#CCCCDC", "transparent": "rgba(0,0,0,0)"}  # fmt: skip
PANEL_BG = "#181b1f"
TEXT = "#ccccdc"
GRID = "rgba(204, 204, 220, 0.12)"
_CALCS: dict[str, Callable[[list[float]], float]] = {
    "lastNotNull": lambda v: v[-1], "last": lambda v: v[-1], "firstNotNull": lambda v: v[0],
    "first": lambda v: v[0], "mean": fmean, "max": max, "min": min, "sum": sum, "count": len,
    "range": lambda v: max(v) - min(v), "delta": lambda v: v[-1] - v[0],
}  # fmt: skip


def draw(result: PanelResult) -> dict[str, Any] | None:
    drawer = DRAWERS.get(result.panel.type)
    if drawer is None:
        return None
    figure = drawer(result)
    figure.update_layout(
        paper_bgcolor=PANEL_BG, plot_bgcolor=PANEL_BG, font={"color": TEXT, "size": 11},
        margin={"l": 8, "r": 8, "t": 4, "b": 4}, autosize=True,
    )  # fmt: skip
    return figure.to_plotly_json()


def reduce(result: PanelResult, named: NamedSeries) -> float | None:
    """One number for a series, by the panel's first calculation."""
    calcs = (result.panel.options.get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
    values = named.series.finite_values()
    if not values:
        return None
    return float(_CALCS.get(calcs[0], _CALCS["lastNotNull"])(values))


def threshold_colour(result: PanelResult, value: float | None, index: int = 0) -> str:
    thresholds = (result.panel.defaults.get("thresholds") or {}).get("steps")
    colour_mode = (result.panel.defaults.get("color") or {}).get("mode", "thresholds")
    if not thresholds or colour_mode != "thresholds":
        return PALETTE[index % len(PALETTE)]
    chosen = thresholds[0].get("color", "green")
    for step in thresholds[1:]:
        if value is not None and step.get("value") is not None and value >= float(step["value"]):
            chosen = step.get("color", chosen)
    return NAMED_COLOURS.get(chosen, chosen)


def _value_axis(values: list[float], unit: str) -> dict[str, Any]:
    if not values:
        return {}
    tickvals, ticktext = axis_ticks(min(values), max(values), unit)
    pad = (tickvals[-1] - tickvals[0]) * 0.03  # a line on the top tick stays visible, and so does the tick
    low = tickvals[0] - pad if tickvals[0] < 0 else tickvals[0]
    return {"tickvals": tickvals, "ticktext": ticktext, "range": [low, tickvals[-1] + pad], "gridcolor": GRID,
            "zeroline": False, "automargin": True}  # fmt: skip


def _legend(result: PanelResult) -> dict[str, Any]:
    legend = result.panel.options.get("legend") or {}
    shown = legend.get("showLegend", True) and legend.get("displayMode") != "hidden"
    if legend.get("placement") == "right":
        return {"showlegend": shown, "legend": {"x": 1.02, "y": 1, "bgcolor": "rgba(0,0,0,0)"}}
    return {"showlegend": shown, "legend": {"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top",
                                            "bgcolor": "rgba(0,0,0,0)"}}  # fmt: skip


def timeseries(result: PanelResult) -> go.Figure:
    unit = result.panel.unit
    style = (result.panel.defaults.get("custom") or {}).get("drawStyle", "line")
    figure = go.Figure()
    for index, named in enumerate(result.series_with_data):
        y = [v if math.isfinite(v) else None for v in named.series.values]
        x = [datetime.fromtimestamp(t) for t in named.series.times]
        common = {"x": x, "y": y, "name": named.name, "customdata": [format_value(v, unit) for v in y],
                  "hovertemplate": "%{customdata}<extra>%{fullData.name}</extra>"}  # fmt: skip
        colour = PALETTE[index % len(PALETTE)]
        if style == "bars":
            figure.add_trace(go.Bar(marker={"color": colour}, **common))
        else:
            mode = "markers" if style == "points" else "lines"
            figure.add_trace(go.Scatter(mode=mode, line={"width": 1.5, "color": colour}, connectgaps=False, **common))
    values = [v for s in result.series_with_data for v in s.series.finite_values()]
    figure.update_layout(
        yaxis=_value_axis(values, unit), xaxis={"gridcolor": GRID, "automargin": True}, hovermode="x unified",
        **_legend(result),
    )  # fmt: skip
    return figure


def _number(value: float, unit: str) -> dict[str, Any]:
    """An Indicator's number in the unit: the value scaled, with the decimals and suffix Grafana writes."""
    factor, suffix = scale(value, unit)
    text = format_number(value / factor)
    decimals = len(text.split(".")[1]) if "." in text else 0
    prefix = unit.removeprefix("prefix:") if unit.startswith("prefix:") else ""
    return {"value": value / factor, "number": {"suffix": suffix, "prefix": prefix, "valueformat": f".{decimals}f"}}


def _grid(count: int) -> tuple[int, int]:
    columns = min(count, 4)
    return math.ceil(count / columns), columns


def stat(result: PanelResult) -> go.Figure:
    unit = result.panel.unit
    named = result.series_with_data
    rows, columns = _grid(len(named))
    figure = go.Figure()
    spark_top = 1.0
    sparkline = len(named) == 1 and result.panel.options.get("graphMode", "area") != "none"
    if sparkline:
        series = named[0].series
        # Grafana's sparkline: the series as a faint area along the bottom, under the number.
        spark_top = max(max(series.finite_values()), 1e-9) * 2.5
        figure.add_trace(go.Scatter(
            x=series.times, y=[v if math.isfinite(v) else None for v in series.values], mode="lines",
            fill="tozeroy", line={"width": 1, "color": threshold_colour(result, reduce(result, named[0]))},
            opacity=0.25, hoverinfo="skip", showlegend=False,
        ))  # fmt: skip
    for index, item in enumerate(named):
        value = reduce(result, item) or 0.0
        number = _number(value, unit)
        number["number"]["font"] = {"color": threshold_colour(result, value, index), "size": 32 if rows == 1 else 22}
        figure.add_trace(go.Indicator(
            mode="number", value=number["value"], number=number["number"],
            title={"text": item.name if len(named) > 1 else "", "font": {"size": 11}},
            domain={"x": [0, 1], "y": [0.3, 1]} if sparkline else {"row": index // columns, "column": index % columns},
        ))  # fmt: skip
    figure.update_layout(
        grid={"rows": rows, "columns": columns}, showlegend=False,
        xaxis={"visible": False}, yaxis={"visible": False, "range": [0, spark_top]},
    )  # fmt: skip
    return figure


def _gauge_range(result: PanelResult, values: list[float]) -> tuple[float, float]:
    defaults, unit = result.panel.defaults, result.panel.unit
    if defaults.get("min") is not None and defaults.get("max") is not None:
        return float(defaults["min"]), float(defaults["max"])
    if unit in ("percentunit", "percent0-1"):
        return 0.0, 1.0
    if unit == "percent":
        return 0.0, 100.0
    return min(0.0, *values), max(max(values), 1e-9)


def gauge(result: PanelResult) -> go.Figure:
    unit = result.panel.unit
    named = result.series_with_data
    values = [reduce(result, s) or 0.0 for s in named]
    low, high = _gauge_range(result, values)
    factor, suffix = scale(max(abs(low), abs(high)), unit)  # one scale for the axis and the number
    rows, columns = _grid(len(named))
    figure = go.Figure()
    for index, (item, value) in enumerate(zip(named, values, strict=True)):
        text = format_number(value / factor)
        decimals = len(text.split(".")[1]) if "." in text else 0
        figure.add_trace(go.Indicator(
            mode="gauge+number", value=value / factor,
            number={"suffix": suffix, "valueformat": f".{decimals}f",
                    "font": {"color": threshold_colour(result, value, index)}},
            title={"text": item.name if len(named) > 1 else "", "font": {"size": 11}},
            gauge={"axis": {"range": [low / factor, high / factor], "tickcolor": TEXT, "ticksuffix": suffix.strip()},
                   "bar": {"color": threshold_colour(result, value, index)}, "bgcolor": "#22252b", "borderwidth": 0},
            domain={"row": index // columns, "column": index % columns},
        ))  # fmt: skip
    figure.update_layout(grid={"rows": rows, "columns": columns})
    return figure


def bargauge(result: PanelResult) -> go.Figure:
    unit = result.panel.unit
    named = result.series_with_data
    values = [reduce(result, s) or 0.0 for s in named]
    figure = go.Figure(go.Bar(
        x=values, y=[s.name for s in named], orientation="h",
        marker={"color": [threshold_colour(result, v, i) for i, v in enumerate(values)]},
        text=[format_value(v, unit) for v in values], textposition="auto",
        hovertemplate="%{y}: %{text}<extra></extra>",
    ))  # fmt: skip
    axis = _value_axis(values, unit)
    figure.update_layout(xaxis=axis, yaxis={"autorange": "reversed", "automargin": True}, showlegend=False)
    return figure


def table(result: PanelResult) -> go.Figure:
    unit = result.panel.unit
    named = result.series_with_data
    keys = sorted({k for s in named for k in s.series.labels if k != "__name__"})
    columns = [[s.series.labels.get(k, "") for s in named] for k in keys]
    columns.append([format_value(reduce(result, s), unit) for s in named])
    figure = go.Figure(go.Table(
        header={"values": [*keys, "Value"], "fill": {"color": "#22252b"}, "font": {"color": TEXT}, "align": "left",
                "line": {"color": "#2c3235"}},
        cells={"values": columns, "fill": {"color": PANEL_BG}, "font": {"color": TEXT}, "align": "left",
               "line": {"color": "#2c3235"}},
    ))  # fmt: skip
    return figure


DRAWERS: dict[str, Callable[[PanelResult], go.Figure]] = {
    "timeseries": timeseries,
    "stat": stat,
    "gauge": gauge,
    "bargauge": bargauge,
    "table": table,
}
