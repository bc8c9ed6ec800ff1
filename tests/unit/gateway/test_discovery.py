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

from services.gateway.discovery import EndpointDiscovery, ServiceTarget, ready_urls
from services.gateway.routing import Router


def slice_list(*endpoints, port=8000, port_name="http"):
    items = [
        V1EndpointSlice(
            address_type="IPv4",
            metadata=V1ObjectMeta(name="svc-abc"),
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
