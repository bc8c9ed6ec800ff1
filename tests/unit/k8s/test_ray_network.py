"""What the NetworkPolicies let RayJob submitters and Ray pods reach, judged connection by connection.

Pods carry the labels the chart (and `lathe train submit --k8s`) give them; each check asks the
rendered policies of both ends (tests/unit/k8s/netpol.py).
"""

from __future__ import annotations

import pytest

from tests.unit.k8s import manifests
from tests.unit.k8s.netpol import External, Pod, allows
from tests.unit.k8s.test_ray_pipelines import EVERY_KNOB, RAY_ON, one, render

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KUBE_DNS = Pod({"k8s-app": "kube-dns"}, "kube-system")
S3 = External("52.216.1.1")
MINIO = Pod({"app": "minio"}, "minio")
REDIS_HA = Pod({"app": "redis-ha"}, "redis")


def pod_labels(objects: list[dict]) -> dict[str, Pod]:
    """The release's pods as the policies see them, labels taken from the rendered templates."""
    cluster = one(objects, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    worker = cluster["spec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    job = next(o for o in objects if o["kind"] == "RayJob")
    return {
        "head": Pod(head),
        "worker": Pod(worker),
        "submitter": Pod(job["spec"]["submitterPodTemplate"]["metadata"]["labels"]),
        "gateway": Pod(one(objects, "Deployment", "lathe-gateway")["spec"]["template"]["metadata"]["labels"]),
        "mlflow": Pod(one(objects, "Deployment", "lathe-mlflow")["spec"]["template"]["metadata"]["labels"]),
    }


def cli_submitter() -> Pod:
    """The submitter pod of a RayJob that `lathe train submit --k8s` creates for this release."""
    from lathe.k8s import build_rayjob

    recipe = manifests.REPO / "pipelines" / "recipes" / "pretrain-tiny.yaml"
    job = build_rayjob(recipe, cluster="lathe-ray", image="lathe-ray:test", release=manifests.RELEASE)
    return Pod(job["spec"]["submitterPodTemplate"]["metadata"]["labels"])


@pytest.mark.parametrize("submitter", ["chart", "cli"])
def test_a_submitter_reaches_dns_and_the_jobs_api_and_nothing_else(submitter):
    objects = render({"ray": RAY_ON})
    pods = pod_labels(objects)
    source = pods["submitter"] if submitter == "chart" else cli_submitter()
    assert allows(objects, source, KUBE_DNS, 53, "UDP")
    assert allows(objects, source, KUBE_DNS, 53, "TCP")
    assert allows(objects, source, pods["head"], 8265)
    denied = [
        (pods["head"], 10001),  # Ray client
        (pods["head"], 6379),  # GCS
        (pods["worker"], 52365),  # a worker's agent
        (pods["mlflow"], 5000),
        (pods["gateway"], 8000),
        (S3, 443),
        (External("10.0.0.1"), 6443),  # the API server
        (Pod(pods["head"].labels, "other-namespace"), 8265),
        (Pod({**pods["head"].labels, "app.kubernetes.io/instance": "another-release"}), 8265),
    ]
    for target, port in denied:
        assert not allows(objects, source, target, port), (target, port)
    assert not allows(objects, pods["head"], source, 8265), "nothing reaches a submitter"
    # Each side holds on its own: the submitter's policy and the Ray policy both stop the Ray client port.
    for name in ("lathe-ray-submitter", "lathe-ray"):
        alone = [one(objects, "NetworkPolicy", name)]
        assert allows(alone, source, pods["head"], 8265), name
        assert not allows(alone, source, pods["head"], 10001), name


def test_the_submitter_policy_selects_only_submitters_of_this_release():
    policy = one(render({"ray": RAY_ON}), "NetworkPolicy", "lathe-ray-submitter")
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "lathe", "app.kubernetes.io/component": "ray-submitter"}
    }
    assert policy["spec"]["ingress"] == [] and sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_ray_pods_reach_object_storage_the_s3_endpoint_the_gateway_and_redis_when_configured():
    objects = render(EVERY_KNOB)
    pods = pod_labels(objects)
    for ray_pod in (pods["head"], pods["worker"]):
        assert allows(objects, ray_pod, S3, 443)
        assert allows(objects, ray_pod, MINIO, 9000)  # endpointUrl's port, in the cluster
        assert allows(objects, ray_pod, External("192.0.2.10"), 9000)  # or outside it
        assert allows(objects, ray_pod, pods["gateway"], 8000)  # both the Ray egress and the gateway's ingress
        assert allows(objects, ray_pod, REDIS_HA, 6380)
        assert not allows(objects, ray_pod, MINIO, 9001)
        assert not allows(objects, ray_pod, REDIS_HA, 6379)
        assert not allows(objects, ray_pod, pods["gateway"], 9100)
    assert allows(objects, pods["submitter"], pods["head"], 8265)
    assert not allows(objects, pods["submitter"], pods["gateway"], 8000)


def test_without_the_knobs_ray_pods_reach_neither_the_gateway_nor_extra_ports():
    objects = render({"ray": RAY_ON})
    pods = pod_labels(objects)
    assert not allows(objects, pods["head"], pods["gateway"], 8000)
    assert not allows(objects, pods["head"], MINIO, 9000)
    assert not allows(objects, pods["head"], REDIS_HA, 6379)
    assert allows(objects, pods["head"], pods["mlflow"], 5000)


@pytest.mark.parametrize(
    ("address", "port"), [("redis-ha.redis.svc", 6379), ("rediss://redis-ha.redis.svc:6390", 6390)]
)
def test_redis_egress_uses_the_addresss_port_or_6379(address, port):
    gcs = {"enabled": True, "redisAddress": address}
    objects = render({"ray": {**RAY_ON, "gcsFaultTolerance": gcs}})
    head = pod_labels(objects)["head"]
    assert allows(objects, head, REDIS_HA, port)
    assert not allows(objects, head, REDIS_HA, port + 1)


def test_an_https_endpoint_without_a_port_opens_443_only():
    s3 = {"endpointUrl": "https://storage.example.com"}
    objects = render({"ray": {**RAY_ON, "pipelines": {"s3": s3}}})
    head = pod_labels(objects)["head"]
    assert allows(objects, head, Pod({"app": "ceph"}, "ceph"), 443)
    assert not allows(objects, head, Pod({"app": "ceph"}, "ceph"), 80)


def test_the_policy_checker_follows_kubernetes_rules():
    """The checker itself: a policy with no egress rules denies, an unselected pod is open, except holds."""
    pod = Pod({"app": "x"})
    deny = {"kind": "NetworkPolicy", "metadata": {"namespace": "lathe"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}  # fmt: skip
    assert not allows([deny], pod, S3, 443)
    assert allows([deny], Pod({"app": "x"}, "elsewhere"), S3, 443)
    block = {**deny, "spec": {**deny["spec"], "egress": [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"port": 443}]}]}}  # fmt: skip
    assert allows([block], pod, S3, 443) and not allows([block], pod, External("10.1.2.3"), 443)
    assert not allows([block], pod, S3, 443, "UDP") and not allows([block], pod, MINIO, 443)


def test_in_production_the_evaluation_stage_reaches_the_gateway_past_the_ingress_only_rule(rendered):
    objects = rendered["production-gpu-values.yaml"]
    pods = pod_labels(objects)
    assert allows(objects, pods["worker"], pods["gateway"], 8000)
    assert not allows(objects, Pod({"app": "anything"}, "team-a"), pods["gateway"], 8000)
    assert allows(objects, Pod({"app": "nginx"}, "ingress-nginx"), pods["gateway"], 8000)
