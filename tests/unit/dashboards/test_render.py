"""Pages drawn from a Prometheus that answers from a script: every panel type, empty panels, errors, offline pages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lathe.dashboards.grafana import load_dashboards
from lathe.dashboards.prometheus import PrometheusClient
from lathe.dashboards.render import render_dashboards
from lathe.errors import ConfigError, PlatformError

NOW = 1_800_000_000


def panel(title: str, kind: str, x: int, y: int, w: int, h: int, exprs: list[str], unit: str = "short") -> dict:
    return {
        "title": title, "type": kind, "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}},
        "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": "{{model}}"} for i, e in enumerate(exprs)],
    }  # fmt: skip


RATE = 'sum by (model) (rate(requests_total{model=~"$model"}[$__rate_interval]))'
BOARD = {
    "uid": "test", "title": "Test board",
    "templating": {"list": [{"name": "model", "type": "query", "definition": "label_values(requests_total, model)",
                             "includeAll": True, "multi": True, "current": {"value": "$__all"}}]},
    "panels": [
        panel("Rate", "timeseries", 0, 0, 12, 8, [RATE], "reqps"),
        panel("Latest", "stat", 12, 0, 6, 4, ["sum(requests_total)"]),
        panel("Cache", "gauge", 18, 0, 6, 4, ["kv_usage"], "percentunit"),
        panel("Bars", "bargauge", 12, 4, 12, 4, ["requests_total"]),
        panel("Table", "table", 0, 8, 12, 6, ["requests_total"]),
        panel("Pie", "piechart", 12, 8, 12, 6, ["requests_total"]),
        panel("Nothing", "timeseries", 0, 14, 12, 6, ["never_exported_total"]),
        panel("Broken", "timeseries", 12, 14, 12, 6, ["rate(requests_total["]),
        {"type": "row", "title": "Notes", "collapsed": True, "gridPos": {"x": 0, "y": 20, "w": 24, "h": 1},
         "panels": [{"type": "text", "title": "Read me", "gridPos": {"x": 0, "y": 21, "w": 24, "h": 3},
                     "options": {"content": "<b>not html</b>"}}]},
    ],
}  # fmt: skip


def fake_prometheus(asked: list[str]) -> httpx.MockTransport:
    def series(model: str, value: float) -> dict:
        return {"metric": {"model": model}, "values": [[NOW - 60 + 5 * i, str(value * i)] for i in range(12)]}

    def handle(request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/api/v1/status/config":
            return httpx.Response(200, json={"status": "success", "data": {"yaml": "global:\n  scrape_interval: 5s\n"}})
        if path == "/api/v1/label/model/values":
            return httpx.Response(200, json={"status": "success", "data": ["a", "b"]})
        query = params["query"]
        asked.append(query)
        if query.endswith("["):
            return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "unexpected end"})
        found = [] if "never_exported" in query else [series("a", 1.0), series("b", 0.01)]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": found}})

    return httpx.MockTransport(handle)


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[dict, Path, list[str]]:
    boards_dir = tmp_path / "boards"
    boards_dir.mkdir()
    (boards_dir / "test.json").write_text(json.dumps(BOARD))
    asked: list[str] = []
    client = PrometheusClient("http://prometheus.test", hint="test", transport=fake_prometheus(asked))
    report = render_dashboards(load_dashboards(boards_dir), client, 1800, None, tmp_path / "out", now=NOW)
    return report, tmp_path / "out", asked


def test_every_query_is_sent_with_its_variables_filled(rendered):
    _, _, asked = rendered
    assert 'sum by (model) (rate(requests_total{model=~"(a|b)"}[20s]))' in asked
    assert not [q for q in asked if "$" in q]


def test_the_report_says_per_panel_what_came_back(rendered):
    report, out, _ = rendered
    (board,) = report["dashboards"]
    panels = {p["title"]: p for p in board["panels"]}
    assert "Read me" not in panels  # a text panel queries nothing
    assert board["panels_total"] == 8 and board["panels_with_data"] == 6
    assert board["empty_panels"] == ["Nothing", "Broken"]
    assert panels["Rate"]["series"] == 2 and panels["Rate"]["empty"] is False
    nothing = {"ref_id": "A", "expr": "never_exported_total", "legend_format": "{{model}}", "series": 0,
               "series_with_data": 0, "error": None}  # fmt: skip
    assert panels["Nothing"]["queries"] == [nothing]
    assert "unexpected end" in panels["Broken"]["queries"][0]["error"]
    assert panels["Pie"]["drawn"] is False and panels["Pie"]["empty"] is False
    assert (report["step"], report["rate_interval"], report["since"]) == ("5s", "20s", "30m")
    assert Path(report["index"]) == out / "index.html" and Path(board["page"]) == out / "test.html"


def test_the_page_draws_every_panel_where_grafana_puts_it(rendered):
    _, out, _ = rendered
    page = (out / "test.html").read_text()
    assert page.count('class="panel"') == 9
    assert 'style="grid-column: 1 / span 12; grid-row: 1 / span 8"' in page
    assert 'style="grid-column: 19 / span 6; grid-row: 1 / span 4"' in page
    assert 'panel type "piechart" not drawn (2 series returned)' in page
    assert "No data" in page and "unexpected end" in page
    assert '<h2 class="row-title">Notes <span>(a collapsed row in Grafana)</span></h2>' in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page
    figures = json.loads(re.search(r"const figures = (\{.*?\});\n", page).group(1))
    assert len(figures) == 5  # timeseries, stat, gauge, bargauge, table
    types = sorted(trace["type"] for figure in figures.values() for trace in figure["data"])
    # Two series each: two lines, two stat numbers, two gauges, one bar chart and one table.
    assert types == ["bar", "indicator", "indicator", "indicator", "indicator", "scatter", "scatter", "table"]


def test_axes_and_values_are_written_in_the_panels_unit(rendered):
    _, out, _ = rendered
    page = (out / "test.html").read_text()
    figures = json.loads(re.search(r"const figures = (\{.*?\});\n", page).group(1))
    rate = next(f for f in figures.values() if f["data"][0].get("name") == "a" and f["data"][0]["type"] == "scatter")
    assert rate["layout"]["yaxis"]["ticktext"][-1].endswith(" req/s")
    gauge = next(f for f in figures.values() if f["data"][0]["type"] == "indicator" and "gauge" in f["data"][0]["mode"])
    assert gauge["data"][0]["number"]["suffix"] == "%"


def test_pages_need_no_network(rendered):
    _, out, _ = rendered
    for page in out.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"<script[^>]+src=", text), page.name
        assert not re.search(r'<link[^>]+href="https?:', text), page.name
    assert "plotly.js" in (out / "test.html").read_text()[:1_000_000]  # the bundle is inline
    assert 'href="test.html"' in (out / "index.html").read_text()


def test_a_server_that_is_not_prometheus_is_one_clear_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="<html>nope</html>"))
    client = PrometheusClient("http://elsewhere.test", hint="check --prometheus", transport=transport)
    with pytest.raises(PlatformError, match=r"http://elsewhere.test does not answer as Prometheus \(HTTP 404"):
        client.scrape_interval()


def lathe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    return env | {"LATHE_HOME": str(tmp_path), "LATHE_PROMETHEUS_PORT": "9"}


def test_an_unreachable_prometheus_is_one_line_naming_the_url_and_the_setting(cli_env):
    result = lathe("dashboards", "render", env=cli_env)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "http://127.0.0.1:9" in line and "LATHE_PROMETHEUS_PORT" in line and "lathe up" in line


def test_a_bad_since_is_one_line_naming_the_option(cli_env):
    result = lathe("dashboards", "render", "--since", "yesterday", env=cli_env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--since" in line and "yesterday" in line


def test_the_command_explains_itself(cli_env):
    result = lathe("dashboards", "render", "--help", env=cli_env)
    assert result.returncode == 0
    for option in ("--since", "--step", "--out", "--prometheus", "--json", "--fail-on-empty"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--prometheus", "127.0.0.1:9090"], "--prometheus"), (["--step", "0s"], "--step")],
)
def test_other_bad_options_are_one_line_naming_the_option(cli_env, args, option):
    result = lathe("dashboards", "render", *args, env=cli_env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert option in line


def test_an_out_path_that_is_a_file_names_the_option(tmp_path):
    (tmp_path / "taken").write_text("")
    transport = fake_prometheus([])
    client = PrometheusClient("http://prometheus.test", hint="test", transport=transport)
    boards = load_dashboards(Path(__file__).resolve().parents[3] / "deploy" / "grafana")
    with pytest.raises(ConfigError, match="--out"):
        render_dashboards(boards, client, 1800, None, tmp_path / "taken" / "pages", now=NOW)
