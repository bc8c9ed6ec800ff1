"""Traffic from outside into the gateway, and the egress to external services, as rendered.

Each way in (an Ingress, a Gateway API HTTPRoute, a LoadBalancer Service) renders valid objects
(Kubernetes 1.31 schemas, the vendored Gateway API CRDs) and NetworkPolicies that admit that path
and nothing beside it, judged connection by connection (tests/unit/k8s/netpol.py). External
PostgreSQL and Redis open egress on their ports only; their credentials come from Secrets.
"""

from __future__ import annotations

import functools
import json
import re

import pytest

from tests.unit.k8s import manifests
from tests.unit.k8s.netpol import External, Pod, allows, selects

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOST = "lathe.example.com"
INGRESS = {"enabled": True, "hosts": [HOST, "api.example.com"], "tls": [{"secretName": "lathe-tls"}],
           "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}}  # fmt: skip
NO_CONTROLLER = {**INGRESS, "controllerNamespaceSelector": None}  # null drops the default
PARENT = {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
HTTP_ROUTE = {"enabled": True, "parentRefs": [PARENT], "hostnames": [HOST], "requestTimeout": "600s"}
LB_RANGE = "203.0.113.0/24"
LB_ANNOTATIONS = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}
LOAD_BALANCER = {"type": "LoadBalancer", "annotations": LB_ANNOTATIONS, "loadBalancerSourceRanges": [LB_RANGE]}

NGINX = Pod({"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx")
GATEWAY_PROXY = Pod({"gateway.networking.k8s.io/gateway-name": "public"}, "gateway-system")
ENVOY = Pod({"app.kubernetes.io/name": "envoy"}, "envoy-gateway-system")
TEAM_POD = Pod({"app": "notebook"}, "team-a")
PROMETHEUS = Pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
CLIENT_IN_RANGE, CLIENT_ELSEWHERE = External("203.0.113.7"), External("198.51.100.1")


@functools.lru_cache(maxsize=32)
def _render_json(values: str) -> list[dict]:
    return manifests.render(json.loads(values))


def render(values: dict) -> list[dict]:
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk (in the dev extras)")
    return _render_json(json.dumps(values, sort_keys=True))


def one(objects: list[dict], kind: str, name: str = "lathe-gateway") -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod(objects: list[dict], component: str) -> Pod:
    return Pod(one(objects, "Deployment", f"lathe-{component}")["spec"]["template"]["metadata"]["labels"])


def gateway_env(objects: list[dict]) -> dict[str, dict]:
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


# Each way in: the values, the clients it must admit, and those it must not.
PATHS = {
    "ingress": ({"ingress": INGRESS}, [NGINX], [GATEWAY_PROXY, TEAM_POD, CLIENT_ELSEWHERE]),
    "httpRoute": ({"httpRoute": HTTP_ROUTE}, [GATEWAY_PROXY], [NGINX, ENVOY, TEAM_POD, CLIENT_ELSEWHERE]),
    "httpRoute-proxies": (
        {"httpRoute": {**HTTP_ROUTE, "proxyNamespaceSelector": {"kubernetes.io/metadata.name": ENVOY.namespace}}},
        [ENVOY],
        [GATEWAY_PROXY, NGINX, TEAM_POD],
    ),
    "loadBalancer": (
        {"service": LOAD_BALANCER},
        [CLIENT_IN_RANGE],
        [CLIENT_ELSEWHERE, NGINX, TEAM_POD],
    ),
    "loadBalancer-anywhere": ({"service": {"type": "LoadBalancer"}}, [CLIENT_IN_RANGE, CLIENT_ELSEWHERE], [TEAM_POD]),
}


@pytest.mark.parametrize("path", PATHS)
def test_each_way_in_admits_its_path_and_nothing_beside_it(path):
    gateway_values, admitted, refused = PATHS[path]
    objects = render({"gateway": gateway_values})
    gateway = pod(objects, "gateway")
    for client in admitted:
        assert allows(objects, client, gateway, 8000), client
        assert not allows(objects, client, gateway, 9100), f"{client} reaches /metrics"
    for client in refused:
        assert not allows(objects, client, gateway, 8000), client
    # What the platform itself needs stays open whichever way is chosen.
    assert allows(objects, pod(objects, "rag"), gateway, 8000)
    assert allows(objects, pod(objects, "agent"), gateway, 8000)
    assert allows(objects, PROMETHEUS, gateway, 9100)
    assert not allows(objects, pod(objects, "mlflow"), gateway, 8000)
    problems = [p for o in objects for p in manifests.validate(o)]
    assert not problems, problems


def test_with_no_way_in_every_namespace_is_admitted_as_before(default_objects):
    objects = default_objects
    assert not [o for o in objects if o["kind"] in ("Ingress", "HTTPRoute")]
    gateway = pod(objects, "gateway")
    assert allows(objects, TEAM_POD, gateway, 8000) and allows(objects, NGINX, gateway, 8000)
    assert not allows(objects, CLIENT_ELSEWHERE, gateway, 8000)
    service = one(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "metrics"}


def test_in_cluster_clients_named_by_selector_keep_their_way_beside_the_ingress():
    selector = {"kubernetes.io/metadata.name": "team-a"}
    objects = render({"networkPolicy": {"gatewayClientNamespaceSelector": selector}, "gateway": {"ingress": INGRESS}})
    gateway = pod(objects, "gateway")
    assert allows(objects, TEAM_POD, gateway, 8000) and allows(objects, NGINX, gateway, 8000)
    assert not allows(objects, Pod({"app": "notebook"}, "team-b"), gateway, 8000)


def test_the_ingress_routes_every_host_to_the_gateway_with_tls_from_cert_manager():
    objects = render({"gateway": {"ingress": INGRESS}})
    ingress = one(objects, "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    # A TLS entry without hosts covers every host of the Ingress.
    assert ingress["spec"]["tls"] == [{"secretName": "lathe-tls", "hosts": [HOST, "api.example.com"]}]
    assert [r["host"] for r in ingress["spec"]["rules"]] == [HOST, "api.example.com"]
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["path"] == "/" and path["pathType"] == "Prefix"
        assert path["backend"]["service"] == {"name": "lathe-gateway", "port": {"number": 8000}}
    service = one(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"


def test_the_http_route_attaches_to_its_gateway_and_validates_against_the_vendored_crd():
    assert ("gateway.networking.k8s.io/v1", "HTTPRoute") in manifests.crd_validators()
    route = one(render({"gateway": {"httpRoute": HTTP_ROUTE}}), "HTTPRoute")
    assert route["spec"]["parentRefs"] == [PARENT] and route["spec"]["hostnames"] == [HOST]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "lathe-gateway", "port": 8000}]
    assert rule["timeouts"] == {"request": "600s"}
    assert manifests.validate(route) == []
    broken = {**route, "spec": {**route["spec"], "rules": [{**rule, "timeouts": {"request": "ten minutes"}}]}}
    assert manifests.validate(broken), "the CRD's schema is applied, not skipped"


def test_a_load_balancer_carries_the_api_port_only_and_metrics_keep_a_cluster_ip_service():
    objects = render({"gateway": {"service": LOAD_BALANCER}})
    public, metrics = one(objects, "Service"), one(objects, "Service", "lathe-gateway-metrics")
    assert manifests.strip_test_annotation(public)["metadata"]["annotations"] == LB_ANNOTATIONS
    assert public["spec"]["loadBalancerSourceRanges"] == [LB_RANGE]
    assert public["spec"]["externalTrafficPolicy"] == "Local", "the client's address must reach the policy"
    assert [p["port"] for p in public["spec"]["ports"]] == [8000]
    assert metrics["spec"]["type"] == "ClusterIP" and [p["name"] for p in metrics["spec"]["ports"]] == ["metrics"]
    monitor = one(objects, "ServiceMonitor")
    scraped = [s for s in (public, metrics) if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert scraped == [metrics]


@pytest.mark.parametrize(
    ("gateway_values", "message"),
    [
        ({"ingress": {**INGRESS, "tls": [{"hosts": [HOST]}]}}, "gateway.ingress.tls[0]: set secretName"),
        (
            {"ingress": {**INGRESS, "tls": [{"secretName": "t", "hosts": ["x.example.com"]}]}},
            "gateway.ingress.tls[0]: host x.example.com is not among gateway.ingress.hosts",
        ),
        ({"ingress": {**INGRESS, "hosts": []}}, "gateway.ingress.hosts: name at least one host"),
        ({"ingress": NO_CONTROLLER}, "gateway.ingress.controllerNamespaceSelector is empty"),
        (
            {"ingress": INGRESS, "service": {"type": "LoadBalancer"}},
            "gateway.service.type LoadBalancer exposes the gateway besides its Ingress/HTTPRoute",
        ),
        ({"httpRoute": HTTP_ROUTE, "service": {"type": "NodePort"}}, "gateway.service.type NodePort exposes"),
        (
            {"service": {"loadBalancerSourceRanges": [LB_RANGE]}},
            "gateway.service.loadBalancerSourceRanges applies to a LoadBalancer only",
        ),
        ({"httpRoute": {**HTTP_ROUTE, "parentRefs": []}}, "gateway.httpRoute.parentRefs: name the Gateway"),
    ],
)
def test_a_way_in_that_cannot_work_fails_with_one_clear_line(gateway_values, message):
    with pytest.raises(Exception, match=re.escape(message)):
        manifests.render({"gateway": gateway_values})


def test_with_policies_off_an_empty_controller_selector_is_no_mistake():
    values = {"networkPolicy": {"enabled": False}, "gateway": {"ingress": NO_CONTROLLER}}
    assert one(render(values), "Ingress")
