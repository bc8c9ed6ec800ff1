"""Endpoint discovery against the Kubernetes API boundary.

No API server can run here, so the client is replaced by an object that answers
``list_namespaced_endpoint_slice`` with the real client's model classes; the rest
(parsing, readiness, keeping breaker state, the pool update) is the shipped code.
"""

from kubernetes.client import (
    DiscoveryV1EndpointPort,
    V1Endpoint,
    V1EndpointConditions,
    V1EndpointSlice,
    V1EndpointSliceList,
    V1ObjectMeta,
)

from services.gateway.app import learn_version
from services.gateway.discovery import EndpointDiscovery, ServiceTarget, ready_urls
from services.gateway.routing import Router
from services.gateway.settings import GatewayServiceSettings


def slice_list(*endpoints, port=8000, port_name="http", labels=None):
    items = [
        V1EndpointSlice(
            address_type="IPv4",
            metadata=V1ObjectMeta(name="svc-abc", labels=labels),
            endpoints=[
                V1Endpoint(addresses=[ip], conditions=V1EndpointConditions(ready=ready)) for ip, ready in endpoints
            ],
            ports=[DiscoveryV1EndpointPort(name=port_name, port=port)],
        )
    ]
    return V1EndpointSliceList(items=items)


class SliceAPI:
    """Stands in for DiscoveryV1Api at the API-server boundary."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def list_namespaced_endpoint_slice(self, namespace, label_selector):
        self.calls.append((namespace, label_selector))
        return self.answers.pop(0)


TARGET = ServiceTarget(model="llama", namespace="lathe", service="lathe-inference-llama", port_name="http")


def test_only_ready_endpoints_on_the_named_port_become_backends():
    urls = ready_urls(slice_list(("10.0.0.1", True), ("10.0.0.2", False), ("10.0.0.3", None)), TARGET)
    assert urls == ["http://10.0.0.1:8000", "http://10.0.0.3:8000"]
    assert ready_urls(slice_list(("10.0.0.1", True), port_name="metrics"), TARGET) == []


def test_pods_join_and_leave_while_survivors_keep_their_state():
    api = SliceAPI(
        [
            slice_list(("10.0.0.1", True), ("10.0.0.2", True)),
            slice_list(("10.0.0.2", True), ("10.0.0.4", True)),
        ]
    )
    router = Router({})
    discovery = EndpointDiscovery(router, [TARGET], api)
    discovery.refresh()
    pool = router.pool("llama")
    assert [b.url for b in pool.backends] == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    survivor = pool.backends[1]
    survivor.breaker.on_failure()
    survivor.outstanding = 2

    discovery.refresh()
    assert [b.url for b in pool.backends] == ["http://10.0.0.2:8000", "http://10.0.0.4:8000"]
    assert pool.backends[0] is survivor and survivor.outstanding == 2
    assert api.calls == [("lathe", "kubernetes.io/service-name=lathe-inference-llama")] * 2


class ByService:
    """Answers per Service, so several targets can be listed in one refresh."""

    def __init__(self, answers: dict[str, list]):
        self.answers = {name: list(items) for name, items in answers.items()}

    def list_namespaced_endpoint_slice(self, namespace, label_selector):
        name = label_selector.removeprefix("kubernetes.io/service-name=")
        queue = self.answers[name]
        return queue.pop(0) if len(queue) > 1 else queue[0]


STABLE = ServiceTarget(model="llama", namespace="lathe", service="lathe-inference-llama", version="auto")
CANARY = ServiceTarget(model="llama", namespace="lathe", service="lathe-inference-llama-canary", version="8", weight=0)


def test_a_canary_service_joins_the_model_at_weight_zero_beside_the_stable_one():
    api = ByService(
        {
            STABLE.service: [slice_list(("10.0.0.1", True), ("10.0.0.2", True))],
            CANARY.service: [slice_list(("10.0.1.1", True), labels={"lathe.dev/model-version": "8"})],
        }
    )
    router = Router({})
    EndpointDiscovery(router, [STABLE, CANARY], api).refresh()
    pool = router.pool("llama")
    by_url = {b.url: b for b in pool.backends}
    assert {u: (b.version, b.weight) for u, b in by_url.items()} == {
        "http://10.0.0.1:8000": ("auto", 100.0),
        "http://10.0.0.2:8000": ("auto", 100.0),
        "http://10.0.1.1:8000": ("8", 0.0),
    }
    assert by_url["http://10.0.0.1:8000"].learns_version and not by_url["http://10.0.1.1:8000"].learns_version
    # No rollout: the canary takes nothing. A rollout's share: it takes that share.
    assert {pool.choose("k").version for _ in range(50)} == {"auto"}
    assert router.set_canary("llama", "8", 100.0)["8"] == 100.0
    assert {pool.choose("k").version for _ in range(50)} == {"8"}


def test_each_target_replaces_only_its_own_backends_whatever_their_versions():
    # Both targets serve version "default": by version alone, each refresh would drop the other's pods.
    first = ServiceTarget(model="llama", namespace="lathe", service="a")
    second = ServiceTarget(model="llama", namespace="lathe", service="b")
    api = ByService(
        {
            "a": [slice_list(("10.0.0.1", True)), slice_list(("10.0.0.1", True), ("10.0.0.3", True))],
            "b": [slice_list(("10.0.1.1", True)), slice_list()],
        }
    )
    router = Router({})
    discovery = EndpointDiscovery(router, [first, second], api)
    discovery.refresh()
    pool = router.pool("llama")
    assert sorted(b.url for b in pool.backends) == ["http://10.0.0.1:8000", "http://10.0.1.1:8000"]
    discovery.refresh()  # b's pod left, a gained one
    assert sorted(b.url for b in pool.backends) == ["http://10.0.0.1:8000", "http://10.0.0.3:8000"]


def test_a_backend_that_learned_its_version_stays_itself():
    api = ByService(
        {
            STABLE.service: [slice_list(("10.0.0.1", True))],
            CANARY.service: [slice_list(("10.0.1.1", True)), slice_list()],
        }
    )
    router = Router({})
    discovery = EndpointDiscovery(router, [STABLE, CANARY], api)
    discovery.refresh()
    pool = router.pool("llama")
    (stable,) = [b for b in pool.backends if b.url == "http://10.0.0.1:8000"]
    learn_version(stable, None)  # vLLM's own /health: an empty 200, no version to learn
    assert stable.version == "auto" and stable.learns_version
    learn_version(stable, {"status": "ok", "version": "7"})  # a server that reports its version
    stable.outstanding = 3
    discovery.refresh()  # the canary's pod leaves; the stable one was "auto" and is now "7"
    assert pool.backends == [stable] and stable.version == "7" and stable.outstanding == 3


def test_the_service_label_names_the_version_and_pods_keep_the_one_they_joined_with():
    old = slice_list(("10.0.1.1", True), labels={"lathe.dev/model-version": "8"})
    rolling = slice_list(("10.0.1.1", True), ("10.0.1.2", True), labels={"lathe.dev/model-version": "9"})
    unlabelled = slice_list(("10.0.1.3", True))
    api = ByService({CANARY.service: [old, rolling, unlabelled]})
    router = Router({})
    discovery = EndpointDiscovery(router, [CANARY], api)
    discovery.refresh()
    discovery.refresh()  # canary.version moved to 9: the old pod still serves 8, the new one 9
    assert {b.url: b.version for b in router.pool("llama").backends} == {
        "http://10.0.1.1:8000": "8",
        "http://10.0.1.2:8000": "9",
    }
    discovery.refresh()  # a Service without the label: the target's own version
    assert [(b.url, b.version) for b in router.pool("llama").backends] == [("http://10.0.1.3:8000", "8")]


def test_the_chart_shaped_setting_parses_into_two_targets_of_one_model(monkeypatch):
    targets = (
        '[{"model": "llama", "namespace": "lathe", "service": "lathe-inference-llama", "port_name": "http",'
        ' "version": "auto"}, {"model": "llama", "namespace": "lathe", "service": "lathe-inference-llama-canary",'
        ' "port_name": "http", "version": "8", "weight": 0}]'
    )
    monkeypatch.setenv("LATHE_GATEWAY_K8S_SERVICES", targets)
    stable, canary = GatewayServiceSettings().service_targets()
    assert (stable.version, stable.weight, canary.version, canary.weight) == ("auto", 100.0, "8", 0.0)
    assert stable.key != canary.key
