"""Egress to external services, their credentials from Secrets, and the verbatim extra rules.

An external PostgreSQL (gateway.database.existingSecret) and an external Redis
(redis.external.urlSecret) open the gateway's egress on their ports to their CIDRs, and nothing
else; networkPolicy.extraIngress / extraEgress land in each component's policy as written.
"""

from __future__ import annotations

import pytest

from tests.unit.k8s import manifests
from tests.unit.k8s.netpol import External, Pod, allows
from tests.unit.k8s.test_traffic import gateway_env, one, pod, render

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VPC_DB, PUBLIC_HOST = External("10.40.3.4"), External("8.8.8.8")
EXTERNAL_DB = {"gateway": {"database": {"existingSecret": "gateway-db", "egress": {"cidrs": ["10.40.0.0/16"]}}}}
# The bundled PostgreSQL off: MLflow then needs its own external database.
NO_POSTGRESQL = {"postgresql": {"enabled": False}, "mlflow": {"database": {"existingSecret": "mlflow-db"}}}
EXTERNAL_REDIS = {"enabled": False, "external": {"urlSecret": {"existingSecret": "redis-url", "key": "uri"}}}


def test_an_external_gateway_database_opens_its_port_to_its_cidrs_only():
    objects = render({**EXTERNAL_DB, **NO_POSTGRESQL})
    gateway = pod(objects, "gateway")
    assert gateway_env(objects)["LATHE_GATEWAY_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "gateway-db", "key": "url"}
    }
    assert allows(objects, gateway, VPC_DB, 5432)
    assert not allows(objects, gateway, PUBLIC_HOST, 5432)
    assert not allows(objects, gateway, VPC_DB, 5433)
    assert not allows(objects, pod(objects, "rag"), VPC_DB, 5432), "only the gateway (and MLflow) reach databases"
    assert not allows(objects, pod(objects, "agent"), VPC_DB, 5432)


def test_the_database_port_is_a_knob_and_cidrs_default_to_the_external_ones():
    database = {"existingSecret": "gateway-db", "egress": {"port": 6432}}
    values = {"gateway": {"database": database}, **NO_POSTGRESQL,
              "networkPolicy": {"externalEgressCidrs": ["192.0.2.0/24"]}}  # fmt: skip
    objects = render(values)
    gateway = pod(objects, "gateway")
    assert allows(objects, gateway, External("192.0.2.9"), 6432)
    assert not allows(objects, gateway, External("192.0.2.9"), 5432)
    assert not allows(objects, gateway, VPC_DB, 6432)


def test_the_bundled_database_opens_no_external_database_port(default_objects):
    objects = default_objects
    gateway = pod(objects, "gateway")
    assert not allows(objects, gateway, VPC_DB, 5432)
    postgresql = one(objects, "StatefulSet", "lathe-postgresql")["spec"]["template"]["metadata"]["labels"]
    assert allows(objects, gateway, Pod(postgresql), 5432)


def test_an_external_redis_gives_the_gateway_its_url_from_a_secret_and_its_port():
    external = {**EXTERNAL_REDIS["external"], "cidrs": ["10.40.0.0/16"]}
    objects = render({"redis": {**EXTERNAL_REDIS, "external": external}})
    env = gateway_env(objects)
    assert env["LATHE_GATEWAY_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis-url", "key": "uri"}}
    assert "value" not in env["LATHE_GATEWAY_REDIS_URL"] and "REDIS_PASSWORD" not in env
    assert env["LATHE_GATEWAY_REDIS_FAILURE_MODE"]["value"] == "closed"
    assert not [o for o in objects if o["metadata"]["name"] == "lathe-redis"], "the bundled Redis is off"
    gateway = pod(objects, "gateway")
    assert allows(objects, gateway, External("10.40.7.7"), 6379)
    assert not allows(objects, gateway, PUBLIC_HOST, 6379)
    assert not allows(objects, gateway, External("10.40.7.7"), 6380)
    assert not allows(objects, pod(objects, "rag"), External("10.40.7.7"), 6379)


def test_the_external_redis_port_is_a_knob():
    objects = render({"redis": {**EXTERNAL_REDIS, "external": {**EXTERNAL_REDIS["external"], "port": 6380}}})
    gateway = pod(objects, "gateway")
    assert allows(objects, gateway, PUBLIC_HOST, 6380) and not allows(objects, gateway, PUBLIC_HOST, 6379)


def test_with_the_bundled_redis_on_the_external_url_is_ignored():
    objects = render({"redis": {"external": EXTERNAL_REDIS["external"]}})
    assert gateway_env(objects)["LATHE_GATEWAY_REDIS_URL"]["value"] == "redis://lathe-redis:6379/0"
    assert not allows(objects, pod(objects, "gateway"), PUBLIC_HOST, 6379)


def test_without_redis_quotas_stay_in_each_pod_and_the_docs_setting_still_applies():
    """Redis is optional to the gateway (it counts in process without one): nothing fails, nothing opens."""
    objects = render({"redis": {"enabled": False}})
    env = gateway_env(objects)
    assert "LATHE_GATEWAY_REDIS_URL" not in env and "LATHE_GATEWAY_REDIS_FAILURE_MODE" not in env
    assert env["LATHE_GATEWAY_DOCS"]["value"] == "false"
    assert not allows(objects, pod(objects, "gateway"), PUBLIC_HOST, 6379)


@pytest.mark.parametrize(
    ("url", "port"), [("https://qdrant.example.com:6333", 6333), ("https://qdrant.example.com", 443)]
)
def test_an_external_qdrant_is_reached_by_rag_alone_on_its_urls_port(url, port):
    qdrant = {"enabled": False, "externalUrl": url, "apiKey": {"existingSecret": "qdrant-key"}}
    objects = render({"qdrant": qdrant})
    rag, cloud, in_cluster = pod(objects, "rag"), External("34.1.2.3"), Pod({"app": "qdrant"}, "vectors")
    assert allows(objects, rag, cloud, port) and allows(objects, rag, in_cluster, port)
    assert not allows(objects, rag, cloud, port + 1)
    assert not allows(objects, pod(objects, "agent"), cloud, port)
    assert not allows(objects, pod(objects, "gateway"), in_cluster, port)


def test_an_external_database_may_live_in_another_namespace_of_the_cluster():
    objects = render({**EXTERNAL_DB, **NO_POSTGRESQL})
    operator_db = Pod({"cnpg.io/cluster": "gateway-db"}, "databases")
    assert allows(objects, pod(objects, "gateway"), operator_db, 5432)
    assert not allows(objects, pod(objects, "gateway"), operator_db, 5433)


COMPONENTS = ["gateway", "inference", "rag", "agent", "ray", "mlflow", "qdrant", "redis", "postgresql"]
PARTNER = Pod({"app": "partner"}, "partner")


def _extra_rules(component: str) -> tuple[dict, dict]:
    """An ingress and an egress rule of one component's own (its port tells it from the others')."""
    port = 7000 + COMPONENTS.index(component)
    ingress = {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "partner"}}}],
               "ports": [{"protocol": "TCP", "port": port}]}  # fmt: skip
    egress = {"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}],
              "ports": [{"protocol": "TCP", "port": port}]}  # fmt: skip
    return ingress, egress


def _with_every_extra_rule() -> list[dict]:
    rules = {c: _extra_rules(c) for c in COMPONENTS}
    extra = {
        "extraIngress": {c: [ingress] for c, (ingress, _) in rules.items()},
        "extraEgress": {c: [egress] for c, (_, egress) in rules.items()},
    }
    return render({"networkPolicy": extra, "ray": {"enabled": True}})


@pytest.mark.parametrize("component", COMPONENTS)
def test_extra_rules_are_appended_verbatim_to_the_components_policy(component):
    objects = _with_every_extra_rule()
    ingress, egress = _extra_rules(component)
    port = ingress["ports"][0]["port"]
    policy = one(objects, "NetworkPolicy", f"lathe-{component}")
    assert policy["spec"]["ingress"][-1] == ingress and policy["spec"]["egress"][-1] == egress
    assert manifests.validate(policy) == []
    target = Pod(policy["spec"]["podSelector"]["matchLabels"])
    assert allows(objects, PARTNER, target, port) and not allows(objects, PARTNER, target, port + 100)
    assert allows(objects, target, External("192.0.2.10"), port)
    assert not allows(objects, target, External("192.0.2.200"), port), "the rule's except is kept"
    # The rules of one component stay in its own policy.
    others = [one(objects, "NetworkPolicy", f"lathe-{c}") for c in COMPONENTS if c != component]
    assert not [p for p in others if ingress in p["spec"]["ingress"] or egress in p["spec"]["egress"]]


def test_production_values_come_in_through_the_ingress_with_tls_and_reach_their_database(rendered):
    objects = rendered["production-gpu-values.yaml"]
    ingress = one(objects, "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"] and tls["hosts"] == [r["host"] for r in ingress["spec"]["rules"]]
    gateway = pod(objects, "gateway")
    assert allows(objects, Pod({"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx"), gateway, 8000)
    assert not allows(objects, Pod({"app": "notebook"}, "team-a"), gateway, 8000)
    assert allows(objects, pod(objects, "rag"), gateway, 8000) and allows(objects, pod(objects, "agent"), gateway, 8000)
    assert allows(objects, gateway, VPC_DB, 5432) and not allows(objects, gateway, PUBLIC_HOST, 5432)
