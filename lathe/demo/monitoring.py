"""The demo's last stage: Prometheus has scraped every component and the loop's last signal."""

from __future__ import annotations

import time

import httpx

from lathe.demo.runner import DemoLoop, DemoRow, StageFailed

# The loop's last signal: once Prometheus holds two samples of it, every rate() panel can be drawn.
LAST_SIGNAL = "lathe_agent_tool_calls_total"


def _prometheus_query(base: str, query: str) -> list[dict]:
    return httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]


def _targets_up(base: str, deadline: float, timeout_s: float) -> dict[str, str]:
    while True:
        targets = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if health and all(h == "up" for h in health.values()):
            return health
        if time.monotonic() > deadline:
            raise StageFailed(f"monitoring: targets not all up after {timeout_s:.0f} s: {health}")
        time.sleep(2)


def _last_signal_scraped(base: str, deadline: float, timeout_s: float) -> None:
    """Wait until the agent's tool calls are in two scrapes, so a rate over them has a value."""
    while True:
        samples = _prometheus_query(base, f"min(count_over_time({LAST_SIGNAL}[5m]))")
        if samples and float(samples[0]["value"][1]) >= 2:
            return
        if time.monotonic() > deadline:
            raise StageFailed(f"monitoring: {LAST_SIGNAL} not scraped twice after {timeout_s:.0f} s")
        time.sleep(1)


def monitoring(loop: DemoLoop, timeout_s: float = 60) -> DemoRow:
    base = f"http://127.0.0.1:{loop.s.prometheus.port}"
    result = DemoRow("monitoring", f"curl {base}/api/v1/targets")
    deadline = time.monotonic() + timeout_s
    try:
        health = _targets_up(base, deadline, timeout_s)
    except httpx.ConnectError:
        result.status = "skipped"
        result.figure = "Prometheus is not installed (make install-system): nothing scraped"
        return result
    _last_signal_scraped(base, deadline, timeout_s)
    samples = _prometheus_query(base, "sum(lathe_gateway_requests_total)")
    requests = int(float(samples[0]["value"][1])) if samples else 0
    result.data.update(targets=health, gateway_requests=requests)
    result.figure = (
        f"{len(health)}/{len(health)} targets up ({', '.join(sorted(health))}); {requests} gateway requests counted"
    )
    return result
