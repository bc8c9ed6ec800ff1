"""A real local platform for the load tests, on ports of its own (21xxx) and a temporary home.

Started once for the package with ``lathe up --json`` and stopped with ``lathe down``,
after which every process it started must be gone. The ports stay clear of the
defaults (a developer's platform), of tests/integration's (2xxxx above 22000) and of
Ray's worker range (10002-19999).
"""

from __future__ import annotations

import pytest

from tests.load import corpus
from tests.support.platform import Platform

PORTS = {
    "LATHE_MLFLOW_PORT": "21500",
    "LATHE_RAY_PORT": "21380",
    "LATHE_RAY_DASHBOARD_PORT": "21265",
    "LATHE_RAY_CLIENT_PORT": "21001",
    "LATHE_RAY_AGENT_PORT": "21365",
    "LATHE_INFERENCE_PORT": "21100",
    "LATHE_INFERENCE_ENGINE_PORT_BASE": "21200",  # scans up to 100 ports from here
    "LATHE_GATEWAY_PORT": "21050",
    "LATHE_GATEWAY_METRICS_PORT": "21059",
    "LATHE_PROMETHEUS_PORT": "21090",
    "LATHE_RAG_PORT": "21300",
    "LATHE_AGENT_PORT": "21400",
}
# Short generations so the 135M model on two cores holds a rate; no Prometheus: nothing
# here reads it, and its scrapes would be load the figures do not ask for.
SETTINGS = {
    "LATHE_AGENT_MAX_TOKENS": "32",
    "LATHE_RAG_MAX_TOKENS": "32",
    "LATHE_PROMETHEUS_ENABLED": "false",
}


@pytest.fixture(scope="package")
def platform(tmp_path_factory) -> Platform:
    platform = Platform(tmp_path_factory.mktemp("lathe-load-home"), PORTS, **SETTINGS)
    platform.up()
    try:
        yield platform
    finally:
        platform.down()


@pytest.fixture(scope="package")
def api_key(platform: Platform) -> str:
    return platform.create_key("load-tests")


@pytest.fixture(scope="package")
def collection(platform: Platform, api_key: str) -> str:
    """The small RAG collection, ingested through the gateway."""
    report = corpus.ingest(platform.gateway_url, api_key)
    assert report["chunks_written"] >= len(corpus.DOCUMENTS)
    return corpus.COLLECTION
