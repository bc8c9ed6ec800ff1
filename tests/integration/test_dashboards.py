"""`lathe dashboards render` against a real Prometheus holding an hour of the platform's metrics, then in Chromium.

The samples are written as OpenMetrics and backfilled with `promtool tsdb create-blocks-from
openmetrics`; Prometheus (Debian's `prometheus` package) then serves them on loopback. Only some
of the metrics the dashboards name are loaded: the panels built on them must come back with
series, and a panel on a metric that was not loaded must be reported empty. The pages are then
opened in headless Chromium (Debian's `chromium`): drawn, and with nothing in the console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.chromium import Chromium, chromium_binary, png_summary

pytestmark = [pytest.mark.integration]

MODEL = "smollm2-135m-instruct"
SCRAPE_S = 5
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# (dashboard file, panel title) of every panel built only on the metrics loaded below.
WITH_DATA = [
    ("lathe-overview.json", "Requests per second"),
    ("lathe-overview.json", "5xx ratio"),  # no 5xx series at all: 0 %, not "No data"
    ("lathe-overview.json", "In-flight requests"),
    ("lathe-overview.json", "Components up"),
    ("lathe-overview.json", "Requests by model"),
    ("lathe-overview.json", "Gateway p99 latency"),
    ("lathe-overview.json", "vLLM KV cache usage"),
    ("lathe-gateway.json", "Requests by status"),
    ("lathe-gateway.json", "Latency p50 / p99"),
    ("lathe-serving.json", "KV cache usage"),
    ("lathe-pipelines.json", "Memory used"),
]
NOT_LOADED = ("lathe-overview.json", "Agent runs per second")  # lathe_agent_runs_total is not in the data


def openmetrics(now: int) -> str:
    """An hour of gateway, vLLM, up and Ray samples every SCRAPE_S seconds, ending now."""
    times = range(now - 3600, now, SCRAPE_S)
    gateway = f'model="{MODEL}",route="/v1/chat/completions"'
    lines = ["# TYPE lathe_gateway_requests counter"]
    lines += [f'lathe_gateway_requests_total{{{gateway},status="200"}} {2 * i} {t}' for i, t in enumerate(times)]
    lines.append("# TYPE lathe_gateway_request_duration_seconds histogram")
    for le in (*BUCKETS, "+Inf"):
        share = 1.0 if le == "+Inf" else min(1.0, float(le) / 0.5)  # latencies spread up to 0.5 s
        name = f'lathe_gateway_request_duration_seconds_bucket{{{gateway},le="{le}"}}'
        lines += [f"{name} {round(2 * i * share)} {t}" for i, t in enumerate(times)]
    lines += [f"lathe_gateway_request_duration_seconds_sum{{{gateway}}} {0.3 * 2 * i} {t}" for i, t in enumerate(times)]
    lines += [f"lathe_gateway_request_duration_seconds_count{{{gateway}}} {2 * i} {t}" for i, t in enumerate(times)]
    lines.append("# TYPE lathe_gateway_inflight_requests gauge")
    lines += [f"lathe_gateway_inflight_requests {i % 3} {t}" for i, t in enumerate(times)]
    lines.append("# TYPE up gauge")
    for job in ("lathe-gateway", "lathe-inference"):
        lines += [f'up{{job="{job}",instance="127.0.0.1:1"}} 1 {t}' for t in times]
    lines.append("# TYPE vllm:kv_cache_usage_perc gauge")
    lines += [f'vllm:kv_cache_usage_perc{{model_name="{MODEL}"}} {0.1 + 0.4 * (i % 60) / 60} {t}'
              for i, t in enumerate(times)]  # fmt: skip
    lines.append("# TYPE ray_node_mem_used gauge")
    lines += [f'ray_node_mem_used{{RayNodeType="head",instance="127.0.0.1"}} {3 * 2**30 + i * 2**20} {t}'
              for i, t in enumerate(times)]  # fmt: skip
    return "\n".join([*lines, "# EOF"]) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if binary is None or promtool is None:
        pytest.skip("prometheus/promtool not installed: Debian's prometheus package (make install-system)")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "samples.om").write_text(openmetrics(int(time.time())))
    backfill = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "samples.om"),
                               str(root / "data")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert backfill.returncode == 0, backfill.stderr
    (root / "prometheus.yml").write_text(f"global:\n  scrape_interval: {SCRAPE_S}s\n")
    url = f"http://127.0.0.1:{free_port()}"
    with (root / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}"], stdout=log, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert process.poll() is None, (root / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus not ready in 60 s"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def lathe(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")} | {"LATHE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def rendered(prometheus, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("dashboards")
    result = lathe("dashboards", "render", "--since", "30m", "--prometheus", prometheus, "--out", str(out), "--json",
                   home=out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out


def panels_by_title(report: dict) -> dict[tuple[str, str], dict]:
    return {(board["file"], panel["title"]): panel for board in report["dashboards"] for panel in board["panels"]}


def test_panels_on_loaded_metrics_have_series_and_one_on_a_missing_metric_is_empty(rendered):
    report, _ = rendered
    panels = panels_by_title(report)
    assert {board["file"] for board in report["dashboards"]} >= {f for f, _ in WITH_DATA}
    no_data = [key for key in WITH_DATA if panels[key]["empty"] or panels[key]["series"] == 0]
    assert not no_data, no_data
    assert panels[NOT_LOADED]["empty"] is True and panels[NOT_LOADED]["series"] == 0
    assert panels[("lathe-overview.json", "Components up")]["series"] == 2  # one per job
    assert report["step"] == "5s" and report["rate_interval"] == "20s"  # the server's scrape interval, 5 s
    for panel in panels.values():
        assert all("$" not in q["expr"] and q["error"] is None for q in panel["queries"]), panel


def test_the_pages_write_values_in_the_panels_units(rendered):
    _, out = rendered
    page = (out / "lathe-overview.html").read_text()
    figures = json.loads(re.search(r"const figures = (\{.*?\});\n", page).group(1))
    ticks = " ".join(t for f in figures.values() for t in (f["layout"].get("yaxis") or {}).get("ticktext") or [])
    assert "req/s" in ticks and "%" in ticks and "ms" in ticks
    memory = (out / "lathe-pipelines.html").read_text()
    assert "GiB" in memory


def test_the_terminal_lists_empty_panels_and_fail_on_empty_fails(prometheus, tmp_path):
    result = lathe("dashboards", "render", "--prometheus", prometheus, "--out", str(tmp_path), "--fail-on-empty",
                   home=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert re.search(r"Lathe / Platform overview\s+10 panels, 7 with data", result.stdout), result.stdout
    assert "no data: Agent runs per second" in result.stdout
    assert "--fail-on-empty" in result.stderr
    assert (tmp_path / "index.html").exists()


@pytest.mark.parametrize("page", ["lathe-overview.html", "lathe-gateway.html", "index.html"])
def test_the_page_draws_in_chromium_offline_with_no_console_errors(rendered, page, tmp_path):
    if chromium_binary() is None:
        pytest.skip("chromium not installed: Debian's chromium package (make install-system)")
    _, out = rendered
    with Chromium() as browser:
        report = browser.open((out / page).as_uri(), screenshot=tmp_path / "page.png", width=1600, height=2000)
    assert report.errors == []
    assert [u for u in report.requests if not u.startswith(("file:", "data:"))] == []
    width, height, colours = png_summary(report.screenshot)
    assert (width, height) == (1600, 2000)
    drawn = page != "index.html"  # a dashboard draws charts; the index is a table of links
    assert colours > (20 if drawn else 3), f"the screenshot of {page} is blank"
    assert report.screenshot.stat().st_size > (20_000 if drawn else 2_000)
