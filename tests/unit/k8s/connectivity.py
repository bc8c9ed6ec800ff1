"""network-config-analyzer's connectivity map of a rendered release, read back as facts.

    world = build_world(objects, outside, addresses)        # the pods and namespaces to analyse
    reach = connectivity(nca, {"default": (rendered_dir, world)}, tmp)["default"]   # one nca run
    reach.between(source, target).allows("TCP", 8000)

nca (PyPI ``network-config-analyzer``, in ``.venv-nca``) evaluates NetworkPolicies with the
Kubernetes semantics. It reads the rendered policies and the rendered Deployments and
StatefulSets itself. The pods it cannot derive are written beside them as Pod objects: the
RayCluster's head and worker groups, the chart's RayJob submitters, the submitter that
``lathe train submit --k8s`` creates (``lathe.k8s.build_rayjob``), and the pods outside the release
that the flow table names (DNS, Prometheus, the KubeRay operator...). Its ``txt_no_fw_rules``
output, one line per source, destination and allowed connections, is parsed into ``Conns``; a
line this module cannot read fails the run rather than being skipped.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")
LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conns>.+)$")
POD = re.compile(r"^(?P<key>[^/\s]+/[^\[\s]+)\[\w+\]$")


@dataclass(frozen=True)
class Endpoint:
    """One pod (``namespace/name`` as nca prints it) or one address outside the cluster."""

    role: str
    key: str
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    address: str = ""
    in_release: bool = False
    ports: dict[str, int] = field(default_factory=dict, compare=False, hash=False)  # named container ports
    span: tuple[int, int] | None = None  # an address range nca reported, for an address with no name

    def holds(self, other: Endpoint) -> bool:
        """Whether ``other`` is this endpoint, or a named address inside this reported range."""
        if self.span and other.address:
            return self.span[0] <= int(ipaddress.ip_address(other.address)) <= self.span[1]
        return self.key == other.key


def _ports(text: str) -> list[tuple[int, int]]:
    spans = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        spans.append((int(low), int(high or low)))
    return spans


@dataclass(frozen=True)
class Cube:
    """Protocols (None: every one) times destination ports (None: every one)."""

    protocols: frozenset[str] | None
    negated: bool
    ports: tuple[tuple[int, int], ...] | None

    @classmethod
    def parse(cls, text: str) -> Cube:
        protocols, negated, ports = None, False, None
        for item in re.split(r",(?=[a-z_]+:)", text.strip()[1:-1]):
            key, _, value = item.partition(":")
            if key == "protocols":
                negated = value.startswith("all but ")
                protocols = frozenset(p.strip() for p in value.removeprefix("all but ").split(","))
            elif key == "dst_ports":
                ports = tuple(_ports(value))
            else:
                raise ValueError(f"nca printed a connection dimension this reader does not know: {text!r}")
        return cls(protocols, negated, ports)

    def allows(self, protocol: str, port: int) -> bool:
        if self.protocols is not None and (protocol in self.protocols) == self.negated:
            return False
        return self.ports is None or any(low <= port <= high for low, high in self.ports)

    def points(self) -> set[tuple[str, int]] | None:
        """Every (protocol, port) it holds, or None when that is not a short finite list."""
        if self.protocols is None or self.negated or self.ports is None:
            return None
        if sum(high - low + 1 for low, high in self.ports) * len(self.protocols) > 64:
            return None
        return {(p, port) for p in self.protocols for low, high in self.ports for port in range(low, high + 1)}


@dataclass
class Conns:
    """The connections nca allows from one endpoint to another (the union of its lines for the pair)."""

    texts: list[str] = field(default_factory=list)
    cubes: list[Cube] = field(default_factory=list)
    everything: bool = False
    all_but: list[list[Cube]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.texts.append(text)
        if text == "All connections":
            self.everything = True
        elif text.startswith("All but "):
            self.all_but.append(_cubes(text.removeprefix("All but ")))
        elif text != "No connections":
            self.cubes.extend(_cubes(text))

    def allows(self, protocol: str, port: int) -> bool:
        if self.everything or any(c.allows(protocol, port) for c in self.cubes):
            return True
        return any(not any(c.allows(protocol, port) for c in cubes) for cubes in self.all_but)

    def within(self, allowed: set[tuple[str, int]] | None) -> bool:
        """Whether every connection here is one of ``allowed`` (None: anything is allowed)."""
        if allowed is None:
            return True
        if self.everything or self.all_but:
            return False
        for cube in self.cubes:
            points = cube.points()
            if points is None or not points <= allowed:
                return False
        return True

    def __str__(self) -> str:
        return "; ".join(self.texts) or "No connections"


def _cubes(text: str) -> list[Cube]:
    if not re.fullmatch(r"\{[^{}]*\}(,\{[^{}]*\})*", text.strip()):
        raise ValueError(f"nca printed a connection this reader does not know: {text!r}")
    return [Cube.parse(part) for part in re.findall(r"\{[^{}]*\}", text)]


@dataclass
class World:
    """The pods nca analyses, by role, and the namespaces they live in."""

    endpoints: list[Endpoint]
    namespaces: dict[str, dict[str, str]]
    extra_pods: list[dict[str, Any]]

    def role(self, name: str) -> list[Endpoint]:
        return [e for e in self.endpoints if e.role == name]

    @property
    def release(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.in_release]


def _pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "scratch"}]}}  # fmt: skip


def _role(labels: dict[str, str]) -> str:
    """A pod's role: its component, plus "-canary" for a model's canary servers (inference-canary)."""
    component = labels["app.kubernetes.io/component"]
    return f"{component}-canary" if labels.get("lathe.dev/track") == "canary" else component


def release_pods(objects: list[dict[str, Any]], cli_submitter: dict[str, str] | None) -> list[tuple[str, dict, dict]]:
    """``(role, pod for nca, pod spec)`` of every pod the release runs; nca reads workloads itself."""
    found: list[tuple[str, dict, dict]] = []
    for obj in objects:
        meta, spec = obj["metadata"], obj.get("spec", {})
        ns = meta.get("namespace", "")
        if obj["kind"] == "Pod":
            found.append((_role(meta["labels"]), obj, spec))
        elif obj["kind"] in WORKLOADS:
            labels = spec["template"]["metadata"]["labels"]
            found.append((_role(labels), obj, spec["template"]["spec"]))
        elif obj["kind"] == "RayCluster":
            head = spec["headGroupSpec"]["template"]
            found.append(("ray-head", _pod(f"{meta['name']}-head", ns, head["metadata"]["labels"]), head["spec"]))
            for group in spec.get("workerGroupSpecs", []):
                name, template = f"{meta['name']}-{group['groupName']}-worker", group["template"]
                found.append(("ray-worker", _pod(name, ns, template["metadata"]["labels"]), template["spec"]))
            if cli_submitter is not None:
                found.append(("cli-submitter", _pod("lathe-cli-submitter", ns, cli_submitter), {}))
        elif obj["kind"] == "RayJob" and "submitterPodTemplate" in spec:
            template = spec["submitterPodTemplate"]
            pod = _pod(f"{meta['name']}-submitter", ns, template["metadata"]["labels"])
            found.append(("ray-submitter", pod, template["spec"]))
    return found


def build_world(objects: list[dict], outside: dict[str, dict], addresses: dict[str, str], cli_submitter=None) -> World:
    """The release's pods, the ``outside`` pods (role -> namespace and labels) and ``addresses``."""
    endpoints, extra, namespaces = [], [], {}
    for role, obj, pod_spec in release_pods(objects, cli_submitter):
        meta = obj["metadata"]
        labels = meta["labels"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]["labels"]
        declared = [p for c in pod_spec.get("containers", []) for p in c.get("ports", [])]
        ports = {p["name"]: p["containerPort"] for p in declared if "name" in p}
        namespaces.setdefault(meta["namespace"], {})
        endpoints.append(Endpoint(role, f"{meta['namespace']}/{meta['name']}", labels, in_release=True, ports=ports))
        if obj["kind"] == "Pod" and obj not in objects:
            extra.append(obj)
    for role, where in outside.items():
        namespaces.setdefault(where["namespace"], {}).update(where.get("namespaceLabels", {}))
        endpoints.append(Endpoint(role, f"{where['namespace']}/{role}", where["labels"]))
        extra.append(_pod(role, where["namespace"], where["labels"]))
    endpoints += [Endpoint(role, address, address=address) for role, address in addresses.items()]
    return World(endpoints, namespaces, extra)


@dataclass
class Reach:
    """nca's answer for one values set: the connections between every pair of endpoints."""

    pods: dict[tuple[str, str], Conns]
    ranges: dict[tuple[str, tuple[int, int]], Conns]  # "+pod" to an address range, "-pod" from one
    seen: set[str]

    def between(self, source: Endpoint, target: Endpoint) -> Conns:
        if not source.address and not target.address:
            return self.pods.get((source.key, target.key), Conns())
        found = Conns()
        pod, address, outward = (source, target, True) if target.address else (target, source, False)
        ip = int(ipaddress.ip_address(address.address))
        for (key, (low, high)), conns in self.ranges.items():
            if key == ("+" if outward else "-") + pod.key and low <= ip <= high:
                for text in conns.texts:
                    found.add(text)
        return found

    def unnamed_ranges(self) -> list[Endpoint]:
        """Every address range nca reported, as an endpoint (for rows about "anything")."""
        spans = sorted({span for _, span in self.ranges})
        return [Endpoint(f"addresses {ipaddress.ip_address(low)}-{ipaddress.ip_address(high)}", f"{low}-{high}",
                         address=str(ipaddress.ip_address(low)), span=(low, high)) for low, high in spans]  # fmt: skip


def _range(text: str) -> tuple[int, int] | None:
    try:
        if "-" in text:
            low, high = text.split("-")
            return int(ipaddress.ip_address(low)), int(ipaddress.ip_address(high))
        network = ipaddress.ip_network(text)
        return int(network.network_address), int(network.broadcast_address)
    except ValueError:
        return None


def parse(output: str) -> Reach:
    reach = Reach({}, {}, set())
    for line in output.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        src, dst = POD.match(match["src"]), POD.match(match["dst"])
        if src and dst:
            reach.pods.setdefault((src["key"], dst["key"]), Conns()).add(match["conns"])
        elif src and _range(match["dst"]):
            reach.ranges.setdefault(("+" + src["key"], _range(match["dst"])), Conns()).add(match["conns"])
        elif dst and _range(match["src"]):
            reach.ranges.setdefault(("-" + dst["key"], _range(match["src"])), Conns()).add(match["conns"])
        else:
            raise ValueError(f"nca printed a line this reader does not know: {line!r}")
        reach.seen.update(m["key"] for m in (src, dst) if m)
    return reach


def connectivity(nca: Path, sets: dict[str, tuple[Path, World]], scratch: Path) -> dict[str, Reach]:
    """One nca run (a scheme with a connectivity query per values set) over ``name -> (rendered, world)``."""
    scratch.mkdir(parents=True, exist_ok=True)
    configs, queries = [], []
    for name, (rendered, world) in sets.items():
        pods, namespaces = scratch / f"{name}-pods.yaml", scratch / f"{name}-namespaces.yaml"
        pods.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": world.extra_pods}))
        items = [{"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns, **labels}}}
                 for ns, labels in sorted(world.namespaces.items())]  # fmt: skip
        namespaces.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList", "items": items}))
        configs.append({"name": name, "namespaceList": str(namespaces), "podList": [str(rendered), str(pods)],
                        "networkPolicyList": [str(rendered)]})  # fmt: skip
        output = {"outputFormat": "txt_no_fw_rules", "outputPath": str(scratch / f"{name}.txt")}
        queries.append({"name": name, "connectivityMap": [name], "outputConfiguration": output})
    scheme = scratch / "scheme.yaml"
    scheme.write_text(yaml.safe_dump({"networkConfigList": configs, "queries": queries}))
    result = subprocess.run([str(nca), "--scheme", str(scheme)], capture_output=True, text=True, timeout=300)
    outputs = {name: scratch / f"{name}.txt" for name in sets}
    if result.returncode != 0 or not all(p.exists() and " => " in p.read_text() for p in outputs.values()):
        raise RuntimeError(f"nca exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return {name: parse(path.read_text()) for name, path in outputs.items()}
