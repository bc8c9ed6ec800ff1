"""Grafana's template variables and time range, turned into the PromQL Grafana would send.

    window = Window.last(parse_duration("30m", "--since"), step_s=None, scrape_interval_s=5)
    values = {**window.builtins(), "model": ".*"}
    substitute('rate(x{model=~"$model"}[$__rate_interval])', values)  # 'rate(x{model=~".*"}[20s])'
    legend_name("{{model}} p99", {"model": "smollm2"}, expr)           # 'smollm2 p99'

The built-in intervals follow Grafana's definitions: ``$__interval`` is the query step,
chosen from the range when it is ``auto`` and never below the scrape interval (Grafana's
"min interval" for a Prometheus data source), and ``$__rate_interval`` is
``max($__interval + scrape interval, 4 × scrape interval)``, the shortest window that
always holds at least two samples for ``rate()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lathe.errors import ConfigError

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# Prometheus refuses a range query of more points than this per series.
MAX_POINTS = 11000
# Points per series an ``auto`` step aims at: about one per pixel of a half-width panel.
AUTO_POINTS = 600
# Grafana's kbn.roundInterval: (upper bound, rounded interval) in seconds.
_ROUNDING = [
    (0.015, 0.01), (0.035, 0.02), (0.075, 0.05), (0.15, 0.1), (0.35, 0.2), (0.75, 0.5), (1.5, 1), (3.5, 2),
    (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60), (210, 120), (450, 300), (750, 600),
    (1050, 900), (1500, 1200), (2700, 1800), (5400, 3600), (9000, 7200), (16200, 10800), (32400, 21600),
    (86400, 43200), (604800, 86400), (1814400, 604800),
]  # fmt: skip
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]")
_LEGEND_LABEL = re.compile(r"\{\{\s*(.+?)\s*\}\}")
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def parse_duration(text: str, option: str) -> float:
    """``30m``, ``1h30m``, ``90s`` → seconds; anything else is a ConfigError naming the option."""
    value = (text or "").strip()
    if not re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w|y))+", value):
        raise ConfigError(f"{option}: {text!r} is not a duration (write it like 30m, 2h or 1h30m)", param=option)
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(value))
    if seconds <= 0:
        raise ConfigError(f"{option}: {text!r} must be longer than zero", param=option)
    return float(seconds)


def format_duration(seconds: float) -> str:
    """Seconds as Prometheus writes a duration: ``20s``, ``5m``, ``1h``, ``250ms``."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{int(seconds)}s"


def round_interval(seconds: float) -> float:
    """Grafana's rounding of a computed interval to one a person would choose."""
    for bound, rounded in _ROUNDING:
        if seconds < bound:
            return rounded
    return 31536000.0


@dataclass(frozen=True)
class Window:
    """The time range of every query: ``start`` to ``end`` (epoch seconds) every ``step`` seconds."""

    start: float
    end: float
    step: float
    scrape_interval: float

    @classmethod
    def last(cls, range_s: float, step_s: float | None, scrape_interval_s: float, now: float | None = None) -> Window:
        end = float(int(now if now is not None else time.time()))
        if step_s is None:
            step_s = max(scrape_interval_s, round_interval(range_s / AUTO_POINTS))
        elif range_s / step_s > MAX_POINTS:
            raise ConfigError(
                f"--step: {format_duration(step_s)} over {format_duration(range_s)} is more than "
                f"{MAX_POINTS:,} points per series (Prometheus's limit); use a longer step",
                param="--step",
            )
        return cls(start=end - range_s, end=end, step=step_s, scrape_interval=scrape_interval_s)

    @property
    def range_s(self) -> float:
        return self.end - self.start

    @property
    def rate_interval(self) -> float:
        return max(self.step + self.scrape_interval, 4 * self.scrape_interval)

    def builtins(self) -> dict[str, str]:
        return {
            "__interval": format_duration(self.step),
            "__interval_ms": str(round(self.step * 1000)),
            "__rate_interval": format_duration(self.rate_interval),
            "__range": format_duration(self.range_s),
            "__range_s": str(round(self.range_s)),
            "__range_ms": str(round(self.range_s * 1000)),
        }


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name``, ``${name}``, ``${name:format}`` and ``[[name]]``; unknown names stay as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)


def legend_name(legend_format: str, labels: Mapping[str, str], expr: str) -> str:
    """A series' name as Grafana shows it: ``{{label}}`` filled in, or the labels, or the query."""
    if legend_format and legend_format != "__auto":
        return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), legend_format)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    name = labels.get("__name__", "")
    if not shown:
        return name or expr
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"


def regex_escape(value: str) -> str:
    """A value as Grafana writes it inside a PromQL regex string (``a.b`` → ``a\\\\.b``)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


# Looks up a query variable's values: (label, metric selector or None) -> values.
LabelValues = Callable[[str, str | None], list[str]]
_LABEL_VALUES = re.compile(r"label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)")


def variable_values(variables: list[dict[str, Any]], window: Window, lookup: LabelValues) -> dict[str, str]:
    """Every variable's text in a query, as Grafana fills it with the dashboard's saved selection."""
    values = window.builtins()
    for variable in variables:
        name = variable.get("name")
        if not name or variable.get("type") == "datasource":
            continue
        values[name] = _variable_value(variable, lookup, values)
    return values


def _variable_value(variable: dict[str, Any], lookup: LabelValues, known: Mapping[str, str]) -> str:
    kind = variable.get("type")
    if kind == "constant":
        return str(variable.get("query") or "")
    if kind == "textbox":
        return str(_current(variable) or variable.get("query") or "")
    if kind == "interval":
        current = _current(variable)
        return known["__interval"] if current in (None, "auto", "$__auto_interval") else str(current)
    regex = bool(variable.get("multi") or variable.get("includeAll"))
    current = _current(variable)
    if current == "$__all" or (isinstance(current, list) and "$__all" in current):
        if variable.get("allValue"):
            return str(variable["allValue"])
        chosen = _options(variable, lookup, known)
    elif current is None:
        chosen = _options(variable, lookup, known)[:1]  # Grafana's default: the first value
    else:
        chosen = current if isinstance(current, list) else [current]
    if not chosen:
        return ".*" if regex else ""
    if not regex:
        return str(chosen[0])
    escaped = [regex_escape(str(v)) for v in chosen]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _current(variable: dict[str, Any]) -> Any:
    current = (variable.get("current") or {}).get("value")
    if current in (None, "", []):
        return None
    if isinstance(current, list) and len(current) == 1:
        return current[0]
    return current


def _options(variable: dict[str, Any], lookup: LabelValues, known: Mapping[str, str]) -> list[str]:
    if variable.get("type") == "custom":
        return [str(o.get("value")) for o in variable.get("options") or [] if o.get("value") != "$__all"] or [
            part.strip() for part in str(variable.get("query") or "").split(",") if part.strip()
        ]
    query = variable.get("query")
    text = query.get("query") if isinstance(query, dict) else query
    match = _LABEL_VALUES.fullmatch(str(variable.get("definition") or text or "").strip())
    if not match:
        return []
    selector = substitute(match.group(1), known) if match.group(1) else None
    return sorted(set(lookup(match.group(2), selector)))
