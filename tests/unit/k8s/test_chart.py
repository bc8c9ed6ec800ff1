"""The chart renders with Helm's engine for every ci/*-values.yaml, and every object is valid.

Rendering goes through helm-python-sdk (Helm's Go engine, offline); validation through the
Kubernetes 1.31 schemas (strict) and the pinned CRDs vendored under deploy/crds/.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.unit.k8s import manifests

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_ci_value_sets_cover_the_four_cases():
    assert {p.name for p in manifests.CI_VALUES} >= {
        "default-values.yaml",
        "kind-values.yaml",
        "production-gpu-values.yaml",
        "monitoring-off-values.yaml",
    }


@pytest.mark.parametrize("values_file", [p.name for p in manifests.CI_VALUES])
def test_every_object_is_valid_for_kubernetes_1_31(rendered, values_file):
    problems = [problem for obj in rendered[values_file] for problem in manifests.validate(obj)]
    assert not problems, "\n".join(problems)


def test_crd_schemas_are_found_and_strict():
    validators = manifests.crd_validators()
    assert {kind for _, kind in validators} >= {"RayCluster", "RayJob", "ServiceMonitor", "PrometheusRule"}
    bogus = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"}, "spec": {"entrypont": "typo"}}
    assert any("entrypont" in problem for problem in manifests.validate(bogus))


def test_unknown_kind_is_a_failure_not_a_pass():
    problems = manifests.validate({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert problems and "Couldn't find schema" in problems[0]


def test_helm_lint_is_clean():
    import helm_python

    report = helm_python.lint(str(manifests.CHART), strict=True, kube_version="v1.31.0")
    findings = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not findings, findings


def test_expected_components_render_by_default(default_objects):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in default_objects}
    for expected in [
        ("Deployment", "lathe-gateway"),
        ("Service", "lathe-gateway"),
        ("HorizontalPodAutoscaler", "lathe-gateway"),
        ("PodDisruptionBudget", "lathe-gateway"),
        ("Deployment", "lathe-inference-smollm2"),
        ("Deployment", "lathe-rag"),
        ("Deployment", "lathe-agent"),
        ("StatefulSet", "lathe-qdrant"),
        ("Deployment", "lathe-mlflow"),
        ("StatefulSet", "lathe-postgresql"),
        ("Deployment", "lathe-redis"),
        ("PrometheusRule", "lathe-monitoring"),
        ("ServiceMonitor", "lathe-inference"),
    ]:
        assert expected in kinds, expected
    # KubeRay objects only behind their flag: render cannot ask the cluster what CRDs exist.
    assert not [o for o in default_objects if o["apiVersion"].startswith("ray.io/")]


def test_crd_objects_are_gated_by_flags(rendered):
    off = rendered["monitoring-off-values.yaml"]
    assert not [o for o in off if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [o for o in off if o["metadata"].get("labels", {}).get("grafana_dashboard")]
    kind = rendered["kind-values.yaml"]
    assert [o for o in kind if o["kind"] == "RayCluster"] and [o for o in kind if o["kind"] == "RayJob"]


def test_templates_are_named_kind_component():
    templates = manifests.CHART / "templates"
    for path in [*templates.iterdir(), *(templates / "tests").iterdir()]:
        if path.name.startswith("_") or path.name == "NOTES.txt" or path.is_dir():
            continue
        assert re.fullmatch(r"[a-z]+-[a-z0-9-]+\.yaml", path.name), path.name
        kinds = {doc["kind"].lower() for doc in _docs_of(str(path.relative_to(templates)))}
        prefix = path.name.split("-")[0]
        assert not kinds or kinds == {_KIND_PREFIX.get(prefix, prefix)}, (path.name, kinds)


_KIND_PREFIX = {"hpa": "horizontalpodautoscaler", "pdb": "poddisruptionbudget", "pvc": "persistentvolumeclaim"}


def _docs_of(template: str) -> list[dict]:
    values = {"ray": {"enabled": True, "jobs": {"enabled": True}}, "helmTest": {"apiKey": {"existingSecret": "k"}}}
    text = manifests.render_files(values).get(f"lathe/templates/{template}", "")
    return [d for d in manifests.load_all(text) if d]


# Maps whose keys are data (label names, resource names), not chart settings.
_FREE_FORM = re.compile(r"(resources|Resources|requests|limits|selectorLabels|Selector|Tolerations)$")


def test_every_value_is_documented_and_camel_case():
    """Every key has a comment right above it; list items after the first repeat the first's keys."""
    lines = (manifests.CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the open parents
    items_seen: dict[str, int] = {}
    for number, line in enumerate(lines):
        commented_item = re.match(r"^(\s*)- #", line)
        if commented_item:  # a list item that opens with its first key's comment
            indent = len(commented_item.group(1)) + 2
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = ".".join(key for _, key in stack)
            items_seen[parent] = items_seen.get(parent, 0) + 1
            continue
        match = re.match(r"^(\s*)(- )?([A-Za-z0-9_]+):", line)
        if not match:
            continue
        indent = len(match.group(1)) + (2 if match.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = ".".join(key for _, key in stack)
        if match.group(2):
            items_seen[parent] = items_seen.get(parent, 0) + 1
        key = match.group(3)
        stack.append((indent, key))
        if stack[:-1] and _FREE_FORM.search(stack[-2][1]):
            continue
        if items_seen.get(parent, 0) > 1 and _in_list(lines, number, indent):
            continue
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", key), f"values.yaml:{number + 1}: {key} is not camelCase"
        above = lines[number - 1].strip()
        assert above.startswith(("#", "- #")), f"values.yaml:{number + 1}: {key} has no comment above it"


def _in_list(lines: list[str], number: int, indent: int) -> bool:
    """Whether the key at ``number`` belongs to a list item (``- `` at indent - 2 above it)."""
    for previous in reversed(lines[: number + 1]):
        stripped = previous.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        previous_indent = len(previous) - len(stripped)
        if previous_indent == indent - 2 and stripped.startswith("- "):
            return True
        if previous_indent < indent - 2 or (previous_indent == indent - 2 and not stripped.startswith("- ")):
            return False
    return False


def test_values_schema_is_in_step_with_values_yaml():
    result = subprocess.run(
        [sys.executable, "helm/gen_values_schema.py", "--check"], cwd=manifests.REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"replicas": 3}}, "additional properties 'replicas' not allowed"),
        ({"gateway": {"port": "8000"}}, "at '/gateway/port': got string, want integer"),
        ({"inference": {"image": {"tag": "latest"}}}, "at '/inference/image/tag'"),
        ({"redis": {"image": {"digest": "7.4.2"}}}, "at '/redis/image/digest'"),
        ({"ray": {"jobs": {"recipes": [{"id": "x", "stage": "train", "recipe": "x.yaml", "enabled": True}]}}}, "stage"),
    ],
)
def test_schema_turns_mistakes_into_clear_helm_errors(values, message):
    import helm_python

    with pytest.raises(helm_python.HelmValuesError) as caught:
        manifests.render(values)
    assert message in str(caught.value)


def test_every_object_names_the_release_namespace(all_objects):
    # `helm template | kubectl apply` lands where `helm install -n` would, never in `default`.
    for values_file, obj in all_objects:
        where = f"{values_file}: {obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"].get("namespace") == manifests.NAMESPACE, where


def test_an_image_digest_pins_the_image_by_content():
    digest = "sha256:" + "0" * 64
    objects = manifests.render({"image": {"digest": digest}, "redis": {"image": {"digest": digest}}})
    images = {c["image"] for o in objects for _, spec in manifests.pod_specs(o) for c in manifests.containers(spec)}
    assert f"ghcr.io/lathe-llmops/lathe:0.1.0@{digest}" in images and f"redis:7.4.2-alpine@{digest}" in images
    assert "postgres:17.2-alpine" in images  # no digest given: the tag alone


def test_notes_print_the_commands_to_reach_gateway_and_grafana():
    notes = manifests.render_files({"gateway": {"adminKey": {"existingSecret": "admin"}}})["lathe/templates/NOTES.txt"]
    assert "kubectl -n lathe port-forward svc/lathe-gateway 8000:8000" in notes
    assert "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80" in notes
    assert "get secret admin" in notes


def test_moving_the_model_version_rolls_the_vllm_pods():
    def checksum(version: str) -> str:
        models = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"]
        models[0]["version"] = version
        objects = manifests.render({"inference": {"models": models}})
        (deployment,) = [o for o in objects if o["kind"] == "Deployment" and "-inference-" in o["metadata"]["name"]]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/model"]

    assert checksum("3") != checksum("4")
    assert checksum("4") == checksum("4")


def test_rayjobs_run_the_shipped_recipes_with_the_right_stage(rendered):
    from lathe.cli.train import ENTRY_POINTS

    recipes = manifests.load_values(manifests.CHART / "values.yaml")["ray"]["jobs"]["recipes"]
    shipped = {p.name for p in (manifests.REPO / "pipelines" / "recipes").glob("*.yaml")}
    assert {r["recipe"] for r in recipes} == shipped
    for recipe in recipes:
        kind = yaml.safe_load((manifests.REPO / "pipelines" / "recipes" / recipe["recipe"]).read_text()).get("kind")
        expected = ENTRY_POINTS[kind].split(".")[1] if kind else "curation"
        assert recipe["stage"] == expected, recipe
    jobs = [o for o in rendered["kind-values.yaml"] if o["kind"] == "RayJob"]
    assert jobs[0]["spec"]["entrypoint"] == "python -m pipelines.curation --config pipelines/recipes/curation.yaml"
    assert jobs[0]["spec"]["clusterSelector"] == {"ray.io/cluster": "lathe-ray"}


def test_gateway_discovers_every_model_service(rendered):
    objects = rendered["production-gpu-values.yaml"]
    (gateway,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "lathe-gateway"]
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    import json

    targets = json.loads(env["LATHE_GATEWAY_K8S_SERVICES"]["value"])
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {t["model"] for t in targets} == {"llama-3-1-8b-instruct-docs", "smollm2-135m-instruct"}
    assert all(t["service"] in services and t["port_name"] == "http" for t in targets)
    assert env["LATHE_GATEWAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "lathe-gateway-db"


def test_gateway_routes_embeddings_to_the_rag_service(rendered, monkeypatch):
    from services.gateway.settings import GatewayServiceSettings

    objects = rendered["production-gpu-values.yaml"]
    gateway, rag = _env_of(objects, "lathe-gateway"), _env_of(objects, "lathe-rag")
    # The gateway's route name is the name the RAG service's encoder answers to.
    assert gateway["LATHE_GATEWAY_RAG_EMBEDDING_MODEL"] == rag["LATHE_RAG_EMBEDDING_MODEL"] == "all-minilm-l6-v2"
    # The settings the gateway pod starts with: chat models discovered, embeddings to RAG.
    for name, value in gateway.items():
        if name.startswith("LATHE_GATEWAY_") and value is not None:
            monkeypatch.setenv(name, value)
    routes = GatewayServiceSettings().load_routes()
    assert list(routes.models) == ["all-minilm-l6-v2"]
    assert routes.models["all-minilm-l6-v2"].backends[0].url == gateway["LATHE_GATEWAY_RAG_URL"]


def test_the_gateway_keeps_its_api_description_private_unless_asked(monkeypatch):
    from services.gateway.settings import GatewayServiceSettings

    for values, expected in (({}, False), ({"gateway": {"docs": True}}, True)):
        env = _env_of(manifests.render(values), "lathe-gateway")
        monkeypatch.setenv("LATHE_GATEWAY_DOCS", env["LATHE_GATEWAY_DOCS"])
        assert GatewayServiceSettings().docs is expected


def test_the_charts_guardrails_and_audit_retention_reach_the_gateway_as_settings_it_takes(monkeypatch):
    from services.gateway.settings import GatewayServiceSettings

    assert "LATHE_GATEWAY_GUARDRAILS" not in _env_of(manifests.render(), "lathe-gateway")
    guardrails = [{"name": "pii", "action": "mask"}, {"name": "deny", "terms": ["napalm"], "on": ["request"]}]
    env = _env_of(manifests.render({"gateway": {"guardrails": guardrails}}), "lathe-gateway")
    monkeypatch.setenv("LATHE_GATEWAY_GUARDRAILS", env["LATHE_GATEWAY_GUARDRAILS"])
    taken = GatewayServiceSettings().guardrails
    assert [(g.name, g.action, g.on) for g in taken] == [("pii", "mask", ["request", "response"]),
                                                         ("deny", "block", ["request"])]  # fmt: skip
    monkeypatch.setenv("LATHE_GATEWAY_AUDIT_RETENTION_DAYS", env["LATHE_GATEWAY_AUDIT_RETENTION_DAYS"])
    assert GatewayServiceSettings().audit_retention_days == 90
    with pytest.raises(Exception, match="at '/gateway/guardrails/0/name'"):
        manifests.render({"gateway": {"guardrails": [{"name": "pij"}]}})


def test_the_charts_prices_reach_the_gateway_as_a_setting_it_takes(monkeypatch):
    from services.gateway.settings import GatewayServiceSettings

    assert "LATHE_GATEWAY_PRICES" not in _env_of(manifests.render(), "lathe-gateway")
    prices = {"smollm2-135m-instruct": {"prompt": 0.1, "completion": 0.3}}
    env = _env_of(manifests.render({"gateway": {"prices": prices}}), "lathe-gateway")
    monkeypatch.setenv("LATHE_GATEWAY_PRICES", env["LATHE_GATEWAY_PRICES"])
    taken = GatewayServiceSettings().prices["smollm2-135m-instruct"]
    assert (taken.prompt, taken.completion) == (0.1, 0.3)
    with pytest.raises(Exception, match="at '/gateway/prices/m'"):
        manifests.render({"gateway": {"prices": {"m": {"prompt": 0.1}}}})


def test_tracing_reaches_every_service_vllm_and_the_network_policies(monkeypatch):
    from lathe.settings import TracingSettings

    default = manifests.render()
    assert all(
        "LATHE_TRACING_ENABLED" not in _env_of(default, d) for d in ("lathe-gateway", "lathe-rag", "lathe-agent")
    )
    endpoint = "http://otel-collector.observability:4318/v1/traces"
    objects = manifests.render({"tracing": {"enabled": True, "otlpEndpoint": endpoint, "sampleRatio": 0.25}})
    for deployment in ("lathe-gateway", "lathe-rag", "lathe-agent"):
        env = _env_of(objects, deployment)
        for name in ("LATHE_TRACING_ENABLED", "LATHE_TRACING_OTLP_ENDPOINT", "LATHE_TRACING_SAMPLE_RATIO"):
            monkeypatch.setenv(name, env[name])
        assert TracingSettings().model_dump() == {"enabled": True, "otlp_endpoint": endpoint, "sample_ratio": 0.25}
    vllm = [c for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]
            if c["name"] == "lathe-vllm"]  # fmt: skip
    assert vllm and all(f"--otlp-traces-endpoint={endpoint}" in c["args"] for c in vllm)
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    for component in ("gateway", "rag", "agent", "inference"):
        egress = policies[f"lathe-{component}"]["spec"]["egress"]
        assert any(p.get("port") == 4318 for rule in egress for p in rule.get("ports", [])), component
    assert not any(p.get("port") == 4318 for o in default if o["kind"] == "NetworkPolicy"
                   for rule in o["spec"].get("egress", []) for p in rule.get("ports", []))  # fmt: skip
    with pytest.raises(Exception, match="at '/tracing/otlpEndpoint'"):
        manifests.render({"tracing": {"enabled": True, "otlpEndpoint": "collector:4318"}})


def _env_of(objects, deployment: str) -> dict:
    """name -> value (None for valueFrom) of the first container of a Deployment."""
    (obj,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment]
    return {e["name"]: e.get("value") for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_a_gateway_without_a_database_fails_unless_sqlite_is_chosen():
    with pytest.raises(Exception, match=re.escape("the gateway needs a database: set gateway.database.existingSecret")):
        manifests.render({"postgresql": {"enabled": False}, "mlflow": {"enabled": False}})
    values = {
        "postgresql": {"enabled": False},
        "mlflow": {"enabled": False},
        "gateway": {"database": {"allowSqlite": True}},
    }
    gateway = next(
        o for o in manifests.render(values) if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
    )
    env = {e["name"] for e in gateway["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert "LATHE_GATEWAY_DATABASE_URL" not in env


def test_an_external_qdrant_needs_its_api_key_from_a_secret():
    external = {"enabled": False, "externalUrl": "https://qdrant.example.com:6333"}
    with pytest.raises(Exception, match=re.escape("an external Qdrant (qdrant.enabled=false) needs its API key")):
        manifests.render({"qdrant": external})
    keyed = {**external, "apiKey": {"existingSecret": "lathe-qdrant", "key": "api-key"}}
    rag = next(
        o
        for o in manifests.render({"qdrant": keyed})
        if o["metadata"]["name"].endswith("-rag") and o["kind"] == "Deployment"
    )
    env = {e["name"]: e for e in rag["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LATHE_RAG_QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lathe-qdrant", "key": "api-key"}


def test_gpu_requests_with_no_gpu_pool_fail_with_a_clear_message():
    no_pool = {"gpuNodeSelector": None, "gpuTolerations": None}
    model = manifests.load_values(manifests.CHART / "values.yaml")["inference"]["models"][0]
    with pytest.raises(Exception, match=f"inference model {model['id']} requests GPUs but no GPU pool is declared"):
        manifests.render({"inference": {**no_pool, "models": [{**model, "gpus": 1}]}})
    with pytest.raises(Exception, match=re.escape("ray.gpuWorkers requests GPUs but no GPU pool is declared")):
        manifests.render({"inference": {**no_pool, "enabled": False}, "ray": {"enabled": True}})
    # A CPU model and a Ray cluster without GPU workers need no GPU pool.
    cpu_only = {"inference": {**no_pool, "models": [{**model, "gpus": 0}]},
                "ray": {"enabled": True, "gpuWorkers": {"enabled": False}}}  # fmt: skip
    kinds = {o["kind"] for o in manifests.render(cpu_only)}
    assert {"Deployment", "RayCluster"} <= kinds
