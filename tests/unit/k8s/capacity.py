"""Will the chart's pods schedule on the node pools Terraform builds? Worked out offline.

There is no scheduler to ask here, so this reads what the scheduler would: each pod's requests,
node selector and tolerations from the rendered chart, and each pool's instance types, labels,
taints and maximum size from terraform/examples/dev plus terraform/instance-types.yaml.
A pod fits a pool when it selects the pool's labels, tolerates its taints and its requests are
within one node's allocatable share. GPUs are counted across the cluster: every GPU pod the
values can run at once (replicas or autoscaling maximum, plus the rolling-update surge) must
find a GPU in the pools' maximum sizes. Then the load as a whole: every pod the values can run at
once, with the cluster add-ons' own pods (`addonPods` in instance-types.yaml), is bin-packed by
its requests onto each pool's maximum number of nodes (first-fit decreasing), so a pool too small
for the sum of its pods fails as surely as a pod too big for one node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from tests.unit.k8s import manifests

TYPES = manifests.REPO / "terraform" / "instance-types.yaml"
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}


def cpu(value) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def gib(value) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * _UNITS[unit] / 2**30


@dataclass
class Pool:
    name: str
    instance_types: list[str]
    max_size: int
    labels: dict[str, str]
    taints: list[dict] = field(default_factory=list)

    def node(self) -> dict[str, float]:
        """The smallest node the pool may start, less what each node keeps for itself."""
        table = yaml.safe_load(TYPES.read_text())
        sizes = [table["types"][t] for t in self.instance_types]
        reserved = table["reserved"]
        return {
            "cpu": min(s["vcpu"] for s in sizes) - reserved["cpu"],
            "memory": min(s["memoryGiB"] for s in sizes) - reserved["memoryGiB"],
            "gpus": min(s["gpus"] for s in sizes),
        }


@dataclass
class Pods:
    where: str
    count: int
    cpu: float
    memory: float
    gpus: int
    selector: dict[str, str]
    tolerations: list[dict]

    def admitted_by(self, pool: Pool) -> bool:
        if any(pool.labels.get(k) != v for k, v in self.selector.items()):
            return False
        return all(any(_tolerates(t, taint) for t in self.tolerations) for taint in pool.taints)

    def fits(self, node: dict[str, float]) -> bool:
        return self.cpu <= node["cpu"] and self.memory <= node["memory"] and self.gpus <= node["gpus"]


def _tolerates(toleration: dict, taint: dict) -> bool:
    if toleration.get("key") not in (None, taint["key"]):
        return False
    if toleration.get("effect") not in (None, "", taint["effect"]):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value") == taint.get("value")


def pod_requests(spec: dict) -> tuple[float, float, int]:
    def total(containers: list[dict]) -> tuple[float, float, int]:
        resources = [c.get("resources", {}) for c in containers]
        reqs = [r.get("requests", {}) for r in resources]
        gpus = [
            int(r.get("requests", {}).get("nvidia.com/gpu", r.get("limits", {}).get("nvidia.com/gpu", 0)))
            for r in resources
        ]
        return sum(cpu(r.get("cpu", 0)) for r in reqs), sum(gib(r.get("memory", 0)) for r in reqs), sum(gpus)

    main = total(spec.get("containers", []))
    inits = [total([c]) for c in spec.get("initContainers", [])]
    return tuple(max([main[i], *(x[i] for x in inits)]) for i in range(3))  # type: ignore[return-value]


def pods_of(objects: list[dict]) -> list[Pods]:
    """Every group of identical pods the release can run at once, at its largest."""
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]: o
        for o in objects
        if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    }
    found = []
    for obj in objects:
        for where, spec in manifests.pod_specs(obj):
            found.append(_group(obj, where, spec, scaled))
    return found


def _group(obj: dict, where: str, spec: dict, scaled: dict) -> Pods:
    kind, body, name = obj["kind"], obj["spec"], obj["metadata"]["name"]
    count = 1
    if kind in ("Deployment", "StatefulSet"):
        scaler = scaled.get(name)
        count = (
            (scaler["spec"].get("maxReplicas") or scaler["spec"].get("maxReplicaCount"))
            if scaler
            else body.get("replicas", 1)
        )
        strategy = body.get("strategy", {})
        # Kubernetes' default surge is 25% (rounded up); Recreate and StatefulSets add no pod.
        surge = 0 if kind == "StatefulSet" or strategy.get("type") == "Recreate" else "25%"
        surge = strategy.get("rollingUpdate", {}).get("maxSurge", surge)
        count += surge if isinstance(surge, int) else -(-count * int(str(surge).rstrip("%")) // 100)
    elif kind == "RayCluster" and where != "head":
        group = next(g for g in body["workerGroupSpecs"] if g["groupName"] == where)
        count = group.get("maxReplicas", group.get("replicas", 1))
    cpus, memory, gpus = pod_requests(spec)
    return Pods(
        f"{kind}/{name} ({where})",
        count,
        cpus,
        memory,
        gpus,
        spec.get("nodeSelector") or {},
        spec.get("tolerations") or [],
    )


def check(objects: list[dict], pools: list[Pool]) -> list[str]:
    """One line per pod group that cannot schedule, or per GPU shortfall; empty when all fit."""
    problems = []
    for group in pods_of(objects):
        landing = [p for p in pools if group.admitted_by(p)]
        if not landing:
            problems.append(
                f"{group.where}: no pool admits it (nodeSelector {group.selector}, tolerations {group.tolerations})"
            )
        elif not any(group.fits(p.node()) for p in landing):
            sizes = ", ".join(f"{p.name}: {p.node()}" for p in landing)
            problems.append(f"{group.where}: requests cpu {group.cpu:g}, memory {group.memory:g}GiB, gpus {group.gpus} "
                            f"exceed a node of every pool it may land on ({sizes})")  # fmt: skip
    wanted = sum(g.count * g.gpus for g in pods_of(objects))
    available = sum(p.max_size * p.node()["gpus"] for p in pools)
    if wanted > available:
        problems.append(f"GPUs: the values can run {wanted} GPU pods at once (replicas, autoscaling maxima and "
                        f"rolling-update surge), the pools have at most {available}")  # fmt: skip
    return problems + pack([*pods_of(objects), *addon_pods()], pools)


def addon_pods() -> list[Pods]:
    """The cluster add-ons' own pods (instance-types.yaml `addonPods`); they select no pool."""
    table = yaml.safe_load(TYPES.read_text())
    return [
        Pods(f"add-on {a['name']}", a["count"], a["cpu"], a["memoryGiB"], a.get("gpus", 0), {}, [])
        for a in table.get("addonPods", [])
    ]


def pack(groups: list[Pods], pools: list[Pool]) -> list[str]:
    """First-fit decreasing of every pod onto the pools' nodes at their maximum count.

    Each pod goes to the first node, in pool order, of a pool that admits it and has room left
    for its requests. One line per group with pods left over; empty when everything fits.
    """
    size = {p.name: p.node() for p in pools}
    nodes = {p.name: [dict(size[p.name]) for _ in range(p.max_size)] for p in pools}
    pods = [g for g in groups if any(g.admitted_by(p) and g.fits(size[p.name]) for p in pools) for _ in range(g.count)]
    pods.sort(key=lambda g: (g.gpus, g.cpu, g.memory), reverse=True)
    left: dict[str, int] = {}
    for pod in pods:
        free = next((n for p in pools if pod.admitted_by(p) for n in nodes[p.name] if pod.fits(n)), None)
        if free is None:
            left[pod.where] = left.get(pod.where, 0) + 1
            continue
        free["cpu"] -= pod.cpu
        free["memory"] -= pod.memory
        free["gpus"] -= pod.gpus
    by_where = {g.where: g for g in groups}
    return [
        f"{where}: {n} of {by_where[where].count} pods find no room on the "
        + " or ".join(
            f"{p.max_size} {p.name} nodes (cpu {size[p.name]['cpu']:g}, memory {size[p.name]['memory']:g}GiB, "
            f"gpus {size[p.name]['gpus']} each)"
            for p in pools
            if by_where[where].admitted_by(p)
        )
        + " left after first-fit decreasing packing of everything that runs at once"
        for where, n in left.items()
    ]


def pools_from_terraform(parsed: dict) -> list[Pool]:
    """The node-pool modules of a parsed, unquoted Terraform root, `var.x` resolved to the variables' defaults."""
    defaults = {name: body.get("default") for block in parsed.get("variable", []) for name, body in block.items()}

    def value(v):
        if isinstance(v, str) and v.startswith("${var.") and v.endswith("}"):
            return defaults[v[6:-1]]
        return v

    pools = []
    for block in parsed.get("module", []):
        for _, body in block.items():
            if not str(body.get("source", "")).endswith("modules/node-pool"):
                continue
            name = body["name"]
            labels = {**(body.get("labels") or {}), "lathe.dev/node-pool": name}
            taints = [
                {"key": t["key"], "value": t.get("value"), "effect": _EFFECTS[t["effect"]]}
                for t in body.get("taints") or []
            ]
            pools.append(Pool(name, list(value(body["instance_types"])), int(value(body["max_size"])), labels, taints))
    return pools


_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
