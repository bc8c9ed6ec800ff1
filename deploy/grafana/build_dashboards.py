"""Write Lathe's Grafana dashboards (the JSON files beside this script) from short panel lists.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 when a file is out of date

The JSON is what ships (the Helm chart loads it into ConfigMaps for Grafana's sidecar);
this script is its source, so a panel is one line here instead of forty in JSON. Every
query may name only metrics listed in deploy/prometheus/known-metrics.yaml: the tests
parse every query with promtool and check the names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATE = "$__rate_interval"

# (title, kind, unit, [(expr, legend), ...]); kind is "timeseries", "stat" or "row" (a heading
# over the panels after it, from row()).
Panel = tuple[str, str, str, list[tuple[str, str]]]


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return expr, legend


def row(title: str) -> Panel:
    return title, "row", "", []


def p99(metric: str, by: str, selector: str = "", quantile: str = "0.99") -> str:
    return f"histogram_quantile({quantile}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))"


# fmt: off
OVERVIEW: list[Panel] = [
    ("Requests per second", "stat", "reqps", [q("sum(rate(lathe_gateway_requests_total[$__rate_interval]))")]),
    # "or vector(0)": with no 5xx answered yet there is no 5xx series, and the ratio is 0, not "No data".
    ("5xx ratio", "stat", "percentunit", [q(
        '(sum(rate(lathe_gateway_requests_total{status=~"5.."}[$__rate_interval])) or vector(0))'
        " / clamp_min(sum(rate(lathe_gateway_requests_total[$__rate_interval])), 1e-9)")]),
    ("In-flight requests", "stat", "short", [q("sum(lathe_gateway_inflight_requests)")]),
    ("Components up", "stat", "short", [q('sum by (job) (up{job=~"lathe-.*"})', "{{job}}")]),
    ("Requests by model", "timeseries", "reqps", [
        q("sum by (model) (rate(lathe_gateway_requests_total[$__rate_interval]))", "{{model}}")]),
    ("Gateway p99 latency", "timeseries", "s", [
        q(p99("lathe_gateway_request_duration_seconds", "model"), "{{model}}")]),
    ("Tokens per second", "timeseries", "short", [
        q("sum by (direction) (rate(lathe_gateway_tokens_total[$__rate_interval]))", "{{direction}}")]),
    ("vLLM KV cache usage", "timeseries", "percentunit", [
        q("max by (model_name) (vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc)", "{{model_name}}")]),
    ("RAG queries per second", "timeseries", "reqps", [
        q("sum by (outcome) (rate(lathe_rag_queries_total[$__rate_interval]))", "{{outcome}}")]),
    ("Agent runs per second", "timeseries", "reqps", [
        q("sum by (status) (rate(lathe_agent_runs_total[$__rate_interval]))", "{{status}}")]),
]

GATEWAY: list[Panel] = [
    ("Requests by status", "timeseries", "reqps", [q(
        'sum by (status) (rate(lathe_gateway_requests_total{model=~"$model"}[$__rate_interval]))', "{{status}}")]),
    ("Latency p50 / p99", "timeseries", "s", [
        q(p99("lathe_gateway_request_duration_seconds", "model", '{model=~"$model"}', "0.5"), "p50 {{model}}"),
        q(p99("lathe_gateway_request_duration_seconds", "model", '{model=~"$model"}'), "p99 {{model}}")]),
    ("Time to first token p95", "timeseries", "s", [
        q(p99("lathe_gateway_time_to_first_token_seconds", "model", '{model=~"$model"}', "0.95"), "{{model}}")]),
    ("Tokens per second by key", "timeseries", "short", [q(
        'sum by (key, direction) (rate(lathe_gateway_tokens_total{key=~"$key", model=~"$model"}[$__rate_interval]))',
        "{{key}} {{direction}}")]),
    ("Tokens per second by model", "timeseries", "short", [q(
        'sum by (model, direction) (rate(lathe_gateway_tokens_total{model=~"$model"}[$__rate_interval]))',
        "{{model}} {{direction}}")]),
    ("Rate-limited requests by key", "timeseries", "reqps", [q(
        # "or vector(0)": no key was refused yet is a rate of 0, not "No data".
        'sum by (key, reason) (rate(lathe_gateway_rate_limited_total{key=~"$key"}[$__rate_interval])) or vector(0)',
        "{{key}} {{reason}}")]),
    ("Requests by model version (canaries)", "timeseries", "reqps", [q(
        'sum by (model, version) (rate(lathe_gateway_version_requests_total{model=~"$model"}[$__rate_interval]))',
        "{{model}} v{{version}}")]),
    ("Upstream errors by backend", "timeseries", "reqps", [q(
        "sum by (backend, kind) (rate(lathe_gateway_upstream_errors_total[$__rate_interval])) or vector(0)",
        "{{backend}} {{kind}}")]),
    ("Backends healthy / breaker state", "timeseries", "short", [
        q("lathe_gateway_backend_healthy", "healthy {{backend}}"),
        q("lathe_gateway_breaker_state", "breaker {{backend}}")]),
    # What requests cost at their models' prices (the routes file's price:, LATHE_GATEWAY_PRICES),
    # and the money budgets' use. "or vector(0)": no priced request yet is $0, not "No data".
    row("Cost"),
    ("Spend per hour by team", "timeseries", "currencyUSD", [q(
        f'sum by (team) (rate(lathe_gateway_spend_usd_total{{key=~"$key", model=~"$model"}}[{RATE}])) * 3600'
        " or vector(0)", "{{team}}")]),
    ("Spend per hour by model", "timeseries", "currencyUSD", [q(
        f'sum by (model) (rate(lathe_gateway_spend_usd_total{{key=~"$key", model=~"$model"}}[{RATE}])) * 3600'
        " or vector(0)", "{{model}}")]),
    ("Budget used (alerts at 80 % and 100 %)", "timeseries", "percentunit", [q(
        "max by (scope, owner, period) (lathe_gateway_period_spend_usd)"
        " / max by (scope, owner, period) (lathe_gateway_budget_usd) or vector(0)",
        "{{scope}} {{owner}} {{period}}")]),
]

SERVING: list[Panel] = [
    ("Running requests", "timeseries", "short", [
        q('sum by (model_name) (vllm:num_requests_running{model_name=~"$model"})', "{{model_name}}")]),
    ("Waiting requests (queue)", "timeseries", "short", [
        q('sum by (model_name) (vllm:num_requests_waiting{model_name=~"$model"})', "{{model_name}}")]),
    ("KV cache usage", "timeseries", "percentunit", [q(
        'max by (model_name) (vllm:kv_cache_usage_perc{model_name=~"$model"}'
        ' or vllm:gpu_cache_usage_perc{model_name=~"$model"})', "{{model_name}}")]),
    ("Prefix-cache hit rate (prompt tokens found cached)", "timeseries", "percentunit", [q(
        'sum by (model_name) (rate(vllm:prefix_cache_hits_total{model_name=~"$model"}[$__rate_interval]))'
        ' / sum by (model_name) (rate(vllm:prefix_cache_queries_total{model_name=~"$model"}[$__rate_interval]))',
        "{{model_name}}")]),
    ("Preemptions per second (KV cache full: a sequence is evicted and recomputed)", "timeseries", "short", [
        q('sum by (model_name) (rate(vllm:num_preemptions_total{model_name=~"$model"}[$__rate_interval]))',
          "{{model_name}}")]),
    ("Speculative decoding: accepted share of proposed tokens", "timeseries", "percentunit", [q(
        'sum by (model_name) (rate(vllm:spec_decode_num_accepted_tokens_total{model_name=~"$model"}'
        "[$__rate_interval]))"
        ' / sum by (model_name) (rate(vllm:spec_decode_num_draft_tokens_total{model_name=~"$model"}'
        "[$__rate_interval]))", "{{model_name}}")]),
    ("LoRA adapters: requests, queued for a batch (max_loras) and evictions per second", "timeseries", "short", [
        q("sum by (adapter) (rate(lathe_inference_adapter_requests_total[$__rate_interval]))", "{{adapter}}"),
        q("sum by (adapter) (rate(lathe_inference_adapter_queued_total[$__rate_interval]))", "queued {{adapter}}"),
        q("sum by (adapter) (rate(lathe_inference_adapter_evictions_total[$__rate_interval]))",
          "evicted {{adapter}}")]),
    ("Prompt / generation tokens per second", "timeseries", "short", [
        q('sum by (model_name) (rate(vllm:prompt_tokens_total{model_name=~"$model"}[$__rate_interval]))',
          "prompt {{model_name}}"),
        q('sum by (model_name) (rate(vllm:generation_tokens_total{model_name=~"$model"}[$__rate_interval]))',
          "generation {{model_name}}")]),
    ("Time to first token p50 / p95", "timeseries", "s", [
        q(p99("vllm:time_to_first_token_seconds", "model_name", '{model_name=~"$model"}', "0.5"), "p50 {{model_name}}"),
        q(p99("vllm:time_to_first_token_seconds", "model_name", '{model_name=~"$model"}', "0.95"),
          "p95 {{model_name}}")]),
    ("End-to-end latency p50 / p99", "timeseries", "s", [
        q(p99("vllm:e2e_request_latency_seconds", "model_name", '{model_name=~"$model"}', "0.5"), "p50 {{model_name}}"),
        q(p99("vllm:e2e_request_latency_seconds", "model_name", '{model_name=~"$model"}'), "p99 {{model_name}}")]),
]

# A rollout's candidate against its champion, as the gateway sees them (lathe models rollouts).
_VERSION = '{model=~"$model"}'
_ERRORS = f"sum by (model, version) (rate(lathe_gateway_version_errors_total{_VERSION}[{RATE}]))"
_SERVED = f"sum by (model, version) (rate(lathe_gateway_version_requests_total{_VERSION}[{RATE}]))"
ROLLOUTS: list[Panel] = [
    row("Rollouts"),
    ("Rollout traffic share by version", "timeseries", "percent", [
        q(f"max by (model, version) (lathe_rollout_weight{_VERSION})", "{{model}} v{{version}}")]),
    ("Rollout step (0: none running)", "timeseries", "short", [
        q(f"max by (model) (lathe_rollout_step{_VERSION})", "{{model}}")]),
    ("Requests by version", "timeseries", "reqps", [q(_SERVED, "{{model}} v{{version}}")]),
    # Failed attempts over all attempts (failed or served); "or 0 *": a version with no error yet is at 0 %.
    ("Error ratio by version", "timeseries", "percentunit", [q(
        f"({_ERRORS} or 0 * {_SERVED}) / clamp_min(({_ERRORS} or 0 * {_SERVED}) + ({_SERVED} or 0 * {_ERRORS}), 1e-9)",
        "{{model}} v{{version}}")]),
    ("Time to first token p95 by version", "timeseries", "s", [
        q(p99("lathe_gateway_version_ttft_seconds", "model, version", _VERSION, "0.95"), "{{model}} v{{version}}")]),
    ("Inter-token latency p95 by version", "timeseries", "s", [
        q(p99("lathe_gateway_version_itl_seconds", "model, version", _VERSION, "0.95"), "{{model}} v{{version}}")]),
    # "or vector(0)": no decision taken (or no feedback given) yet is 0, not "No data".
    ("Rollout decisions", "timeseries", "short", [q(
        f"sum by (model, decision) (increase(lathe_rollout_decisions_total{_VERSION}[{RATE}])) or vector(0)",
        "{{model}} {{decision}}")]),
    ("Feedback and judge scores recorded", "timeseries", "short", [q(
        f"sum by (model, version, source) (increase(lathe_gateway_feedback_total{_VERSION}[{RATE}])) or vector(0)",
        "{{model}} v{{version}} {{source}}")]),
]

RAG_AGENT: list[Panel] = [
    ("RAG queries by outcome", "timeseries", "reqps", [q(
        'sum by (collection, outcome) (rate(lathe_rag_queries_total{collection=~"$collection"}[$__rate_interval]))',
        "{{collection}} {{outcome}}")]),
    ("Retrieval latency p95", "timeseries", "s", [q(p99(
        "lathe_rag_retrieval_seconds", "collection, mode", '{collection=~"$collection"}', "0.95"),
        "{{collection}} {{mode}}")]),
    ("Hits per query p50", "timeseries", "short", [q(p99(
        "lathe_rag_retrieved_hits", "collection", '{collection=~"$collection"}', "0.5"), "{{collection}}")]),
    ("Documents ingested / chunks written", "timeseries", "short", [
        q('sum by (collection, outcome) (rate(lathe_rag_documents_ingested_total{collection=~"$collection"}'
          "[$__rate_interval]))", "docs {{collection}} {{outcome}}"),
        q('sum by (collection) (rate(lathe_rag_chunks_written_total{collection=~"$collection"}[$__rate_interval]))',
          "chunks {{collection}}")]),
    ("Agent runs by status", "timeseries", "reqps", [q(
        "sum by (agent, status) (rate(lathe_agent_runs_total[$__rate_interval]))", "{{agent}} {{status}}")]),
    ("Agent run duration p95", "timeseries", "s", [q(p99("lathe_agent_run_seconds", "agent", quantile="0.95"),
                                                      "{{agent}}")]),
    ("Steps per run p50", "timeseries", "short", [q(p99("lathe_agent_steps_per_run", "agent", quantile="0.5"),
                                                   "{{agent}}")]),
    ("Tool calls by outcome", "timeseries", "reqps", [q(
        "sum by (tool, outcome) (rate(lathe_agent_tool_calls_total[$__rate_interval]))", "{{tool}} {{outcome}}")]),
]

# Curation and training log their metrics (loss, tokens/s, documents kept) to MLflow, not
# Prometheus: this dashboard shows the Ray cluster doing the work and the registry taking it.
PIPELINES: list[Panel] = [
    ("Ray tasks by state", "timeseries", "short", [q("sum by (State) (ray_tasks)", "{{State}}")]),
    ("Ray actors by state", "timeseries", "short", [q("sum by (State) (ray_actors)", "{{State}}")]),
    ("Curation: rows out per operator (Ray Data)", "timeseries", "short", [
        q("sum by (dataset, operator) (rate(ray_data_output_rows[$__rate_interval]))", "{{dataset}} {{operator}}")]),
    ("Training runs by controller state (Ray Train)", "timeseries", "short", [q(
        "sum by (ray_train_run_name, ray_train_controller_state) (ray_train_controller_state)",
        "{{ray_train_run_name}} {{ray_train_controller_state}}")]),
    ("CPU cores in use", "timeseries", "short", [q(
        "sum by (RayNodeType) (ray_node_cpu_utilization * ray_node_cpu_count / 100)", "{{RayNodeType}}")]),
    ("GPU utilisation", "timeseries", "percentunit", [
        q("avg by (instance, GpuIndex) (ray_node_gpus_utilization / 100)", "{{instance}} GPU {{GpuIndex}}"),
        # A cluster without GPUs says so (0 reporting) instead of showing "No data".
        q("count(ray_node_gpus_utilization) or vector(0)", "GPUs reporting")]),
    ("Memory used", "timeseries", "bytes", [
        q("sum by (RayNodeType) (ray_node_mem_used)", "{{RayNodeType}}"),
        q("sum by (Location) (ray_object_store_memory)", "object store {{Location}}")]),
    ("MLflow requests by status", "timeseries", "reqps", [q(
        "sum by (status) (rate(mlflow_http_request_total[$__rate_interval]))", "{{status}}")]),
    ("MLflow latency p95", "timeseries", "s", [q(p99("mlflow_http_request_duration_seconds", "method", quantile="0.95"),
                                                 "{{method}}")]),
]
# fmt: on


def variable(name: str, query: str) -> dict:
    return {
        "name": name, "label": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "includeAll": True,
        "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1,
    }  # fmt: skip


def grid(panels: list[Panel]) -> list[dict]:
    """gridPos of each panel: stats 6 wide along the top, graphs 12 wide two by two, each row
    a full-width heading under the graphs before it, with its own graphs below it."""
    positions, stats, graphs, top = [], 0, 0, 4
    for panel_title, kind, _, _ in panels:
        if kind == "row":
            top += (graphs + 1) // 2 * 8
            positions.append({"x": 0, "y": top, "w": 24, "h": 1})
            graphs, top = 0, top + 1
        elif kind == "stat":
            assert top == 4, f"{panel_title}: stats go above the first row"
            positions.append({"x": stats * 6 % 24, "y": 0, "w": 6, "h": 4})
            stats += 1
        else:
            positions.append({"x": graphs % 2 * 12, "y": top + graphs // 2 * 8, "w": 12, "h": 8})
            graphs += 1
    return positions


def dashboard(uid: str, title: str, panels: list[Panel], variables: list[dict]) -> dict:
    built = []
    for index, ((panel_title, kind, unit, queries), pos) in enumerate(zip(panels, grid(panels), strict=True)):
        if kind == "row":
            built.append({"id": index + 1, "type": "row", "title": panel_title, "collapsed": False, "gridPos": pos,
                          "panels": []})  # fmt: skip
            continue
        built.append({
            "id": index + 1, "type": kind, "title": panel_title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": pos,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
            "targets": [
                {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend or "__auto"}
                for i, (expr, legend) in enumerate(queries)
            ],
        })  # fmt: skip
    datasource = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"}
    return {
        "uid": uid, "title": title, "tags": ["lathe"], "timezone": "browser", "schemaVersion": 39,
        "editable": True, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource, *variables]}, "panels": built,
    }  # fmt: skip


def dashboards() -> dict[str, dict]:
    model = variable("model", "label_values(lathe_gateway_requests_total, model)")
    vllm_model = variable("model", "label_values(vllm:num_requests_running, model_name)")
    key = variable("key", "label_values(lathe_gateway_tokens_total, key)")
    collection = variable("collection", "label_values(lathe_rag_queries_total, collection)")
    return {
        "lathe-overview.json": dashboard("lathe-overview", "Lathe / Platform overview", OVERVIEW, []),
        "lathe-gateway.json": dashboard("lathe-gateway", "Lathe / Gateway", GATEWAY, [model, key]),
        "lathe-serving.json": dashboard("lathe-serving", "Lathe / Serving (vLLM)", SERVING + ROLLOUTS, [vllm_model]),
        "lathe-rag-agent.json": dashboard("lathe-rag-agent", "Lathe / RAG and agents", RAG_AGENT, [collection]),
        "lathe-pipelines.json": dashboard("lathe-pipelines", "Lathe / Pipelines (Ray, MLflow)", PIPELINES, []),
    }


def render(board: dict) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, board in dashboards().items():
        path = HERE / name
        text = render(board)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python deploy/grafana/build_dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
