"""Prometheus's HTTP API, the few calls a dashboard needs.

    client = PrometheusClient("http://127.0.0.1:9090", hint="the port is LATHE_PROMETHEUS_PORT")
    client.scrape_interval()                          # 5.0, from the server's own configuration
    client.query_range('sum(up)', start, end, step)   # [Series(labels={}, times=[…], values=[…])]

A server that cannot be reached, or that does not answer as Prometheus, is a
``PlatformError`` naming the URL, with a hint that says where the URL came from; a query Prometheus refuses is a
``QueryError`` carrying Prometheus's own message (the dashboard draws it in the panel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from lathe.dashboards.variables import parse_duration
from lathe.errors import InvalidRequestError, PlatformError

# Prometheus's own default when its configuration names no scrape interval.
DEFAULT_SCRAPE_INTERVAL_S = 60.0


class QueryError(InvalidRequestError):
    """Prometheus refused a query (a syntax error, an unknown function, too many points)."""

    code = "bad_query"


@dataclass
class Series:
    """One time series of a range query: its labels and its points (NaN where Prometheus said NaN)."""

    labels: dict[str, str]
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(math.isfinite(v) for v in self.values)

    def finite_values(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]


class PrometheusClient:
    def __init__(
        self, url: str, hint: str, timeout_s: float = 15.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.hint = hint
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> Any:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PlatformError(
                f"cannot reach Prometheus at {self.url} ({type(exc).__name__})",
                hint=self.hint,
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise PlatformError(
                f"{self.url} does not answer as Prometheus (HTTP {response.status_code} for {path})",
                hint=self.hint,
            )
        if body["status"] != "success":
            raise QueryError(f"Prometheus refused the query: {body.get('error') or body.get('errorType')}")
        return body.get("data")

    def scrape_interval(self) -> float:
        """The global scrape interval the server runs with (also a check that it answers)."""
        data = self._get("/api/v1/status/config")
        try:
            config = yaml.safe_load(data["yaml"]) or {}
            interval = (config.get("global") or {}).get("scrape_interval")
            return parse_duration(str(interval), "scrape_interval") if interval else DEFAULT_SCRAPE_INTERVAL_S
        except (KeyError, TypeError, yaml.YAMLError, InvalidRequestError):
            return DEFAULT_SCRAPE_INTERVAL_S

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise QueryError(f"Prometheus answered a {data.get('resultType') if data else 'missing'} result")
        return [
            Series(
                labels=dict(item.get("metric") or {}),
                times=[float(t) for t, _ in item.get("values") or []],
                values=[float(v) for _, v in item.get("values") or []],
            )
            for item in data.get("result") or []
        ]

    def label_values(self, label: str, selector: str | None, start: float, end: float) -> list[str]:
        params: list[tuple[str, Any]] = [("start", start), ("end", end)]
        if selector:
            params.append(("match[]", selector))
        try:
            data = self._get(f"/api/v1/label/{label}/values", params)
        except QueryError:
            return []
        return [str(v) for v in data or []]
