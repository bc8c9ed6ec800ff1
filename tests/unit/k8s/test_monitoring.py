"""Alerts and dashboards: promtool checks and unit-tests the rules, every dashboard query
parses, and every metric and label a query names is in deploy/prometheus/known-metrics.yaml.

promtool comes from Debian's `prometheus` package (`make install-system`); without it these
tests fail, naming the package, rather than pass untested.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lathe.dashboards.grafana import load_dashboard
from tests.unit.k8s import manifests

DEPLOY = manifests.REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "lathe-alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "lathe-alerts-test.yaml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
KNOWN = yaml.safe_load((DEPLOY / "prometheus" / "known-metrics.yaml").read_text())
METRICS = {name: spec for section in KNOWN.values() for name, spec in section.items()}
# Grafana's variables, replaced by what Grafana sends to Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$key": ".*", "$collection": ".*"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (make install-system)")
    return path


def dashboard_queries() -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and query variable, Grafana variables substituted."""
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):  # a row has none
                queries.append((f"{path.name}: {panel['title']}", _substitute(target["expr"])))
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable.get("definition", ""))
            if match:
                queries.append((f"{path.name}: ${variable['name']}", f"count by ({match.group(2)}) ({match.group(1)})"))
    return queries


def _substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords, labels and literals left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        if match.group(2) or match.group(1).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(1))
    return names


def labels_used(expr: str) -> set[str]:
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def known(name: str) -> dict | None:
    if name in METRICS:
        return METRICS[name]
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    spec = METRICS.get(base)
    return spec if spec and spec["type"] == "histogram" else None


def test_promtool_checks_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_the_alerts():
    result = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_what_matters():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    text = " ".join(alerts.values())
    for needle in ["lathe_gateway_requests_total", "lathe_gateway_request_duration_seconds_bucket",
                   "time_to_first_token_seconds_bucket", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                   "vllm:gpu_cache_usage_perc", "kube_pod_container_status_restarts_total",
                   'kuberay_job_deployment_status{deployment_status="Failed"}', 'up{job="lathe-mlflow"}',
                   'lathe_rollout_decisions_total{decision="rollback"}', "lathe_gateway_budget_usd"]:  # fmt: skip
        assert needle in text, needle


def test_chart_ships_the_same_rules(default_objects):
    (rule,) = [o for o in default_objects if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_dashboards_ship_as_sidecar_configmaps(default_objects):
    maps = [o for o in default_objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert {o["metadata"]["labels"]["grafana_dashboard"] for o in maps} == {"1"}
    shipped = {name: json.loads(text) for o in maps for name, text in o["data"].items()}
    assert shipped == {p.name: json.loads(p.read_text()) for p in DASHBOARDS}
    assert {"lathe-overview.json", "lathe-gateway.json", "lathe-serving.json", "lathe-rag-agent.json",
            "lathe-pipelines.json"} <= set(shipped)  # fmt: skip


def test_dashboards_are_built_from_their_source():
    script = DEPLOY / "grafana" / "build_dashboards.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_dashboard_query_parses(tmp_path: Path):
    queries = dashboard_queries()
    assert len(queries) > 30
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"lathe:dashboard_query:{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_and_label_queried_is_exported():
    rules = yaml.safe_load(RULES.read_text())
    alert_queries = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    problems = []
    for where, expr in dashboard_queries() + alert_queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr}"
        specs = [known(name) for name in names]
        problems += [f"{where}: unknown metric {n}" for n, s in zip(names, specs, strict=True) if s is None]
        labels = {"le", "job", "instance", "namespace", "pod"} | {lab for s in specs if s for lab in s["labels"]}
        problems += [f"{where}: label {label!r} not exported" for label in labels_used(expr) - labels]
    assert not problems, "\n".join(problems)


def test_the_metric_check_catches_a_made_up_name():
    assert known("lathe_gateway_requests_total") and known("lathe_rag_retrieval_seconds_bucket")
    assert known("lathe_gateway_requests_total_bucket") is None
    assert metric_names('sum by (model) (rate(lathe_made_up_total{status=~"5.."}[5m])) / 1e-9') == {
        "lathe_made_up_total"
    }


def test_the_serving_dashboard_follows_rollouts_in_a_row_of_its_own():
    board = load_dashboard(DEPLOY / "grafana" / "lathe-serving.json")
    (section,) = [s for s in board.sections if s.title == "Rollouts"]
    assert not section.collapsed and len(section.panels) == 8
    named = {name for panel in section.panels for target in panel.targets for name in metric_names(target.expr)}
    assert {"lathe_rollout_weight", "lathe_rollout_step", "lathe_rollout_decisions_total",
            "lathe_gateway_version_errors_total", "lathe_gateway_version_ttft_seconds_bucket",
            "lathe_gateway_version_itl_seconds_bucket", "lathe_gateway_feedback_total"} <= named  # fmt: skip
    assert board.sections[0].title is None and len(board.sections[0].panels) == 10  # the engine's panels stay on top


def test_the_serving_dashboard_shows_the_kv_cache_the_prefix_cache_preemptions_speculation_and_adapters():
    board = load_dashboard(DEPLOY / "grafana" / "lathe-serving.json")
    by_title = {
        panel.title: {name for target in panel.targets for name in metric_names(target.expr)}
        for panel in board.sections[0].panels
    }
    wanted = {
        "KV cache usage": {"vllm:kv_cache_usage_perc"},
        "Prefix-cache hit rate": {"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"},
        "Preemptions per second": {"vllm:num_preemptions_total"},
        "Speculative decoding": {"vllm:spec_decode_num_accepted_tokens_total",
                                 "vllm:spec_decode_num_draft_tokens_total"},
        "LoRA adapters": {"lathe_inference_adapter_requests_total", "lathe_inference_adapter_evictions_total"},
    }  # fmt: skip
    for start, metrics in wanted.items():
        (names,) = [names for title, names in by_title.items() if title.startswith(start)]
        assert metrics <= names, (start, names)
