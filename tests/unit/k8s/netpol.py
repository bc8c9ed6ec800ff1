"""Whether rendered NetworkPolicies admit one connection, by the Kubernetes NetworkPolicy rules.

    allows(policies, Pod(labels), Pod(labels, "kube-system"), 53, "UDP")

A connection passes when the source's egress and the destination's ingress both admit it: a side
with no policy selecting its pod for that direction admits everything; otherwise one rule of one
selecting policy must match the peer and the port. Peers: ``podSelector`` (the policy's namespace
unless a ``namespaceSelector`` is given), ``namespaceSelector`` (every pod of the matching
namespaces), ``ipBlock`` (addresses outside the cluster only: whether it also matches pod IPs
differs between CNIs, so a test never relies on it). Named ports are not used by the chart and
never match here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pod:
    labels: dict[str, str]
    namespace: str = "lathe"
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespace_labels = {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


@dataclass
class External:
    """An address outside the cluster (object storage, a managed Redis, the API server)."""

    ip: str


Endpoint = Pod | External


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against labels; {} selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, External):
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        if isinstance(entry["port"], int) and entry["port"] <= port <= entry.get("endPort", entry["port"]):
            return True
    return False


def _policy_types(spec: dict[str, Any]) -> list[str]:
    # Unset: Ingress, plus Egress when the policy has egress rules (the API server's default).
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _side_admits(policies: list[dict], pod: Pod, direction: str, other: Endpoint, port: int, protocol: str) -> bool:
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in _policy_types(p["spec"])
    ]
    if not selecting:
        return True
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(p, pod.namespace, other) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allows(policies: list[dict], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Whether ``source`` may open ``port``/``protocol`` on ``target`` under ``policies``."""
    policies = [p for p in policies if p["kind"] == "NetworkPolicy"]
    egress = not isinstance(source, Pod) or _side_admits(policies, source, "Egress", target, port, protocol)
    ingress = not isinstance(target, Pod) or _side_admits(policies, target, "Ingress", source, port, protocol)
    return egress and ingress
