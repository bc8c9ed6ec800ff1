"""Every metric the dashboards and alerts may name is one the running platform exports.

``deploy/prometheus/known-metrics.yaml`` is the one list that the dashboard and alert
tests (tests/unit/k8s) check queries against; this checks the list itself against a
live scrape of `lathe up`: the gateway, inference (with vLLM's own series), RAG,
agent and MLflow. Ray and Kubernetes names cannot be scraped here.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.conftest import PORTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KNOWN = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "known-metrics.yaml"
_TYPE = re.compile(r"^# TYPE (\S+) (\w+)$", re.M)


def _scrape(port: str) -> dict[str, str]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return dict(_TYPE.findall(text))


def test_every_known_lathe_vllm_and_mlflow_metric_is_exported(platform):
    known = yaml.safe_load(KNOWN.read_text())
    exported: dict[str, str] = {}
    for port in ("LATHE_GATEWAY_METRICS_PORT", "LATHE_INFERENCE_PORT", "LATHE_RAG_PORT", "LATHE_AGENT_PORT",
                 "LATHE_MLFLOW_PORT"):  # fmt: skip
        exported.update(_scrape(PORTS[port]))
    missing, wrong_type = [], []
    for section in ("lathe", "vllm", "mlflow"):
        for name, spec in known[section].items():
            # The platform's engine does not speculate; adapter series appear once an adapter is used.
            if spec.get("legacy") or spec.get("speculative") or spec.get("lora"):
                continue
            if name not in exported:
                missing.append(name)
            elif exported[name] != spec["type"]:
                wrong_type.append(f"{name}: listed {spec['type']}, exported {exported[name]}")
    assert not missing, f"listed in known-metrics.yaml but not exported: {missing}"
    assert not wrong_type, wrong_type
