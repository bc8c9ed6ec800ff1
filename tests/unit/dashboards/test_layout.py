"""Dashboards laid out as Grafana lays them out: gridPos on a 24-column grid, rows as headings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lathe.dashboards.grafana import GridPos, grid_area, load_dashboard, load_dashboards, panel_height_px
from lathe.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "grafana"


def panel(title: str, x: int, y: int, w: int, h: int, kind: str = "timeseries", **extra) -> dict:
    return {"title": title, "type": kind, "gridPos": {"x": x, "y": y, "w": w, "h": h}, **extra}


def write(tmp_path: Path, panels: list[dict]) -> Path:
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"uid": "b", "title": "Board", "panels": panels}))
    return path


def test_grid_position_becomes_a_css_grid_area():
    assert grid_area(GridPos(x=0, y=0, w=6, h=4)) == "grid-column: 1 / span 6; grid-row: 1 / span 4"
    assert grid_area(GridPos(x=12, y=12, w=12, h=8), top=4) == "grid-column: 13 / span 12; grid-row: 9 / span 8"
    assert panel_height_px(GridPos(h=8)) == 8 * 30 + 7 * 8


def test_rows_are_headings_over_their_own_panels(tmp_path):
    board = load_dashboard(write(tmp_path, [
        panel("top", 0, 0, 24, 4, "stat"),
        {"type": "row", "title": "Open row", "collapsed": False, "gridPos": {"x": 0, "y": 4, "w": 24, "h": 1}},
        panel("right", 12, 5, 12, 8), panel("left", 0, 5, 12, 8),
        {"type": "row", "title": "Closed row", "collapsed": True, "gridPos": {"x": 0, "y": 13, "w": 24, "h": 1},
         "panels": [panel("hidden", 0, 14, 24, 6, "graph")]},
    ]))  # fmt: skip
    assert [(s.title, s.collapsed, [p.title for p in s.panels]) for s in board.sections] == [
        (None, False, ["top"]),
        ("Open row", False, ["left", "right"]),
        ("Closed row", True, ["hidden"]),
    ]
    closed = board.sections[2]
    assert closed.top == 14 and grid_area(closed.panels[0].grid, closed.top).endswith("grid-row: 1 / span 6")
    assert closed.panels[0].type == "timeseries"  # Grafana migrates the old graph panel


def test_a_panel_off_the_grid_is_pulled_back_onto_it(tmp_path):
    board = load_dashboard(write(tmp_path, [panel("wide", 20, 0, 30, 4)]))
    assert board.panels[0].grid == GridPos(x=0, y=0, w=24, h=4)


def test_shipped_dashboards_fit_the_grid_without_overlapping():
    boards = load_dashboards(SHIPPED)
    assert {b.slug for b in boards} >= {"lathe-overview", "lathe-gateway", "lathe-serving", "lathe-pipelines"}
    for board in boards:
        taken: dict[tuple[int, int], str] = {}
        for p in board.panels:
            assert p.grid.x + p.grid.w <= 24, p.title
            cells = [(x, y) for x in range(p.grid.x, p.grid.x + p.grid.w) for y in range(p.grid.y, p.grid.y + p.grid.h)]
            for cell in cells:
                assert cell not in taken, f"{board.title}: {p.title} overlaps {taken.get(cell)}"
                taken[cell] = p.title


def test_a_file_that_is_not_a_dashboard_is_named(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_dashboards(tmp_path)
    with pytest.raises(ConfigError, match="--dashboards"):
        load_dashboards(tmp_path / "missing")
