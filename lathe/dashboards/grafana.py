"""Grafana dashboard JSON as Lathe reads it: panels, their queries, rows and the 24-column grid.

    board = load_dashboard(Path("deploy/grafana/lathe-gateway.json"))
    for section in board.sections:          # the panels above the first row, then one per row
        for panel in section.panels:
            grid_area(panel.grid, section.top)   # "grid-column: 1 / span 12; grid-row: 1 / span 8"

Grafana places a panel on a grid 24 columns wide whose rows are 30 px high with 8 px
between them (``gridPos`` x, y, w, h). A row panel is a heading: when it is open the
panels below it (up to the next row) belong to it; when it is collapsed Grafana keeps
them inside the row (``row.panels``). Each section here holds its own panels, drawn
from the row's top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError

GRID_COLUMNS = 24
GRID_ROW_PX = 30
GRID_GAP_PX = 8
# Panel types Grafana renamed; it migrates them on load, and so do we.
_LEGACY_TYPES = {"graph": "timeseries", "singlestat": "stat", "table-old": "table"}
# Panels that draw no query results: they are neither counted nor checked for data.
QUERYLESS_TYPES = frozenset({"row", "text", "news", "dashlist", "welcome"})


@dataclass(frozen=True)
class GridPos:
    x: int = 0
    y: int = 0
    w: int = 12
    h: int = 8


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel, as the JSON holds it (variables not yet substituted)."""

    ref_id: str
    expr: str
    legend_format: str = ""


@dataclass
class Panel:
    id: int | None
    type: str
    title: str
    grid: GridPos
    targets: list[Target]
    raw: dict[str, Any] = field(repr=False)

    @property
    def defaults(self) -> dict[str, Any]:
        """``fieldConfig.defaults``: unit, min, max, decimals."""
        return (self.raw.get("fieldConfig") or {}).get("defaults") or {}

    @property
    def unit(self) -> str:
        return self.defaults.get("unit") or "short"

    @property
    def options(self) -> dict[str, Any]:
        return self.raw.get("options") or {}

    @property
    def queries_data(self) -> bool:
        return self.type not in QUERYLESS_TYPES


@dataclass
class Section:
    """The panels under one row heading (``title`` None: those above the first row)."""

    title: str | None
    collapsed: bool
    panels: list[Panel]

    @property
    def top(self) -> int:
        return min((p.grid.y for p in self.panels), default=0)

    @property
    def height(self) -> int:
        return max((p.grid.y + p.grid.h for p in self.panels), default=0) - self.top


@dataclass
class Dashboard:
    path: Path
    uid: str
    title: str
    variables: list[dict[str, Any]]
    sections: list[Section]

    @property
    def panels(self) -> list[Panel]:
        return [panel for section in self.sections for panel in section.panels]

    @property
    def slug(self) -> str:
        return self.path.stem


def load_dashboards(directory: Path) -> list[Dashboard]:
    """Every ``*.json`` dashboard in a folder, by file name."""
    if not directory.is_dir():
        raise ConfigError(f"--dashboards: {directory} is not a folder of Grafana dashboard JSON files")
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ConfigError(f"--dashboards: no *.json dashboards in {directory}")
    return [load_dashboard(path) for path in paths]


def load_dashboard(path: Path) -> Dashboard:
    try:
        board = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable dashboard JSON file ({exc})") from None
    # A dashboard exported "for sharing externally" wraps itself in {"dashboard": …}.
    board = board.get("dashboard", board) if isinstance(board, dict) else board
    if not isinstance(board, dict) or not isinstance(board.get("panels", []), list):
        raise ConfigError(f"{path}: not a Grafana dashboard (no panels list)")
    return Dashboard(
        path=path,
        uid=str(board.get("uid") or path.stem),
        title=str(board.get("title") or path.stem),
        variables=list((board.get("templating") or {}).get("list") or []),
        sections=split_sections(board.get("panels") or []),
    )


def split_sections(panels: list[dict[str, Any]]) -> list[Section]:
    """Rows become headings; every other panel joins the row above it (or the top section)."""
    sections = [Section(None, False, [])]
    for raw in sorted(panels, key=lambda p: (_grid(p).y, _grid(p).x)):
        if raw.get("type") != "row":
            sections[-1].panels.append(parse_panel(raw))
            continue
        collapsed = bool(raw.get("collapsed"))
        inner = [parse_panel(p) for p in sorted(raw.get("panels") or [], key=lambda p: (_grid(p).y, _grid(p).x))]
        sections.append(Section(str(raw.get("title") or ""), collapsed, inner if collapsed else []))
    return [s for s in sections if s.panels or s.title is not None]


def parse_panel(raw: dict[str, Any]) -> Panel:
    kind = str(raw.get("type") or "unknown")
    targets = [
        Target(str(t.get("refId") or chr(ord("A") + i)), str(t["expr"]), str(t.get("legendFormat") or ""))
        for i, t in enumerate(raw.get("targets") or [])
        if isinstance(t, dict) and t.get("expr") and not t.get("hide")
    ]
    return Panel(
        id=raw.get("id"),
        type=_LEGACY_TYPES.get(kind, kind),
        title=str(raw.get("title") or ""),
        grid=_grid(raw),
        targets=targets,
        raw=raw,
    )


def _grid(raw: dict[str, Any]) -> GridPos:
    pos = raw.get("gridPos") or {}
    w = min(max(int(pos.get("w", 12)), 1), GRID_COLUMNS)
    x = min(max(int(pos.get("x", 0)), 0), GRID_COLUMNS - w)
    return GridPos(x=x, y=max(int(pos.get("y", 0)), 0), w=w, h=max(int(pos.get("h", 8)), 1))


def grid_area(grid: GridPos, top: int = 0) -> str:
    """The CSS that puts a panel where Grafana draws it, in a section whose first row is ``top``."""
    return f"grid-column: {grid.x + 1} / span {grid.w}; grid-row: {grid.y - top + 1} / span {grid.h}"


def panel_height_px(grid: GridPos) -> int:
    """A panel's height in pixels as Grafana draws it: h rows and the gaps between them."""
    return grid.h * GRID_ROW_PX + (grid.h - 1) * GRID_GAP_PX
