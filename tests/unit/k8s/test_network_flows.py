"""The flow table (tests/unit/k8s/flows.yaml) against nca's reading of the rendered NetworkPolicies.

    .venv/bin/pytest -q tests/unit/k8s/test_network_flows.py
    make .venv-nca/.installed    # once: python3.11 -m venv .venv-nca, pip install network-config-analyzer==2.1.0

network-config-analyzer lives in ``.venv-nca`` (its exact pins clash with the platform's). Without
it these tests skip, unless ``CI`` is set: CI must run them. One nca run maps the connectivity of
every ci/*-values.yaml and of every set under the table's ``valueSets:``
(tests/unit/k8s/connectivity.py); every row that applies to a values set is checked against its map.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.k8s import manifests
from tests.unit.k8s.connectivity import Endpoint, Reach, World, build_world, connectivity

NCA = manifests.REPO / ".venv-nca" / "bin" / "nca"
TABLE = Path(__file__).with_name("flows.yaml")
TABLE_SETS = (yaml.safe_load(TABLE.read_text()) or {}).get("valueSets", {})
SETS = [p.name.removesuffix("-values.yaml") for p in manifests.CI_VALUES] + sorted(TABLE_SETS)
FLOW = re.compile(r"^(?P<src>[^>]+?)\s*->\s*(?P<dst>[^:]+):(?P<port>\d+|any)(?:/(?P<protocol>TCP|UDP|SCTP))?$")


@dataclass(frozen=True)
class Flow:
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    port: int | None  # None: every port and protocol
    protocol: str

    @classmethod
    def parse(cls, text: str) -> Flow:
        match = FLOW.match(text.strip())
        assert match, f"flows.yaml: {text!r} is not 'SOURCES -> TARGETS:PORT[/PROTOCOL]'"
        names = [tuple(n.strip() for n in match[side].split(",")) for side in ("src", "dst")]
        port = None if match["port"] == "any" else int(match["port"])
        return cls(names[0], names[1], port, match["protocol"] or "TCP")


def load_table() -> dict[str, Any]:
    table = yaml.safe_load(TABLE.read_text())
    row_keys = {"flow", "why", "when"}
    keys = {"allow": row_keys, "deny": row_keys, "only": {"flows", "within", "why", "when"}}
    for kind in ("allow", "deny", "only"):
        for row in table[kind]:
            assert row.get("why"), f"flows.yaml: {kind} row {row} says no why"
            unknown = set(row) - keys[kind]
            assert not unknown, f"flows.yaml: {kind} row {row} has unknown keys {unknown} (quote text with commas)"
            flows = [row["flow"]] if kind != "only" else [row["flows"], *row["within"]]
            row["parsed"] = [Flow.parse(text) for text in flows]
    return table


def set_values(values_set: str) -> dict[str, Any]:
    """The values of a ci/*-values.yaml, or of a set the table declares under `valueSets:`."""
    if values_set in TABLE_SETS:
        return TABLE_SETS[values_set]
    return manifests.load_values(manifests.CHART / "ci" / f"{values_set}-values.yaml")


def merged_values(values_set: str) -> dict[str, Any]:
    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(manifests.load_values(manifests.CHART / "values.yaml"), set_values(values_set))


def applies(row: dict[str, Any], values: dict[str, Any]) -> bool:
    for condition in row.get("when", []):
        value: Any = values
        for key in condition.lstrip("!").split("."):
            if isinstance(value, list):  # a list item by index: inference.models.0.canary
                value = value[int(key)] if key.isdigit() and int(key) < len(value) else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        if bool(value) == condition.startswith("!"):
            return False
    return True


@dataclass
class Analysed:
    values: dict[str, Any]
    world: World
    reach: Reach

    def resolve(self, name: str, strict: bool = True) -> list[Endpoint]:
        if name == "*":
            return self.world.release
        if name == "anything":
            return self.world.endpoints + self.reach.unnamed_ranges()
        found = self.world.role(name)
        assert found or not strict, f"the flow names {name!r}, which this values set does not render (add a `when:`)"
        return found

    def pairs(self, flow: Flow) -> list[tuple[Endpoint, Endpoint]]:
        sources = [e for name in flow.sources for e in self.resolve(name)]
        targets = [e for name in flow.targets for e in self.resolve(name)]
        return [(s, t) for s in sources for t in targets if s.key != t.key]


@pytest.fixture(scope="module")
def nca() -> Path:
    if not NCA.exists():
        install = "python3.11 -m venv .venv-nca && .venv-nca/bin/pip install network-config-analyzer==2.1.0"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the flow tables, and {NCA} is missing: {install}")
        pytest.skip(f"network-config-analyzer is not installed (it needs its own environment): {install}")
    return NCA


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return load_table()


def cli_submitter_labels() -> dict[str, str]:
    """The labels of the submitter pod that `lathe train submit --k8s` creates for this release."""
    from lathe.k8s import build_rayjob

    recipe = manifests.REPO / "pipelines" / "recipes" / "pretrain-tiny.yaml"
    job = build_rayjob(recipe, cluster="lathe-ray", image="lathe-ray:test", release=manifests.RELEASE)
    return job["spec"]["submitterPodTemplate"]["metadata"]["labels"]


def objects_of(rendered: dict[str, list[dict]], values_set: str) -> list[dict]:
    if values_set in TABLE_SETS:
        return manifests.render(TABLE_SETS[values_set])
    return rendered[f"{values_set}-values.yaml"]


@pytest.fixture(scope="module")
def analysed(nca, table, rendered, tmp_path_factory) -> dict[str, Analysed]:
    """nca's connectivity map of every values set (one nca run for them all)."""
    out = tmp_path_factory.mktemp("flows")
    extra = []
    for name, values in TABLE_SETS.items():
        extra.append(out / f"{name}-values.yaml")
        extra[-1].write_text(yaml.safe_dump(values))
    written = manifests.write_rendered(out / "rendered", manifests.CI_VALUES + extra)
    assert sorted(written) == sorted(SETS)
    cli = cli_submitter_labels()
    worlds = {name: build_world(objects_of(rendered, name), table["outside"], table["addresses"], cli) for name in SETS}
    reach = connectivity(nca, {name: (out / "rendered" / name, world) for name, world in worlds.items()}, out / "nca")
    return {name: Analysed(merged_values(name), worlds[name], reach[name]) for name in SETS}


def rows(table: dict[str, Any], kind: str, analysed: Analysed) -> list[dict[str, Any]]:
    return [row for row in table[kind] if applies(row, analysed.values)]


@pytest.mark.parametrize("values_set", SETS)
def test_nca_sees_every_pod(analysed, values_set):
    """Every pod of the release and of the table is in nca's map: no row passes for want of a pod."""
    here = analysed[values_set]
    missing = [f"{e.role} ({e.key})" for e in here.world.endpoints if not e.address and e.key not in here.reach.seen]
    assert not missing, f"nca reported no connection at all for {missing} (cut off from everything, or not read)"


@pytest.mark.parametrize("values_set", SETS)
def test_the_allowed_flows_are_open(table, analysed, values_set):
    here, failed = analysed[values_set], []
    for row in rows(table, "allow", here):
        flow = row["parsed"][0]
        for source, target in here.pairs(flow):
            conns = here.reach.between(source, target)
            ok = conns.everything if flow.port is None else conns.allows(flow.protocol, flow.port)
            if not ok:
                failed.append(f"{row['flow']} ({row['why']}): {source.key} -> {target.key} allows {conns}")
    assert not failed, "flows that must be open are closed:\n" + "\n".join(failed)


@pytest.mark.parametrize("values_set", SETS)
def test_the_denied_flows_are_closed(table, analysed, values_set):
    here, failed = analysed[values_set], []
    for row in rows(table, "deny", here):
        flow = row["parsed"][0]
        for source, target in here.pairs(flow):
            conns = here.reach.between(source, target)
            open_ = bool(conns.texts) if flow.port is None else conns.allows(flow.protocol, flow.port)
            if open_:
                failed.append(f"{row['flow']} ({row['why']}): {source.key} -> {target.key} allows {conns}")
    assert not failed, "flows that must be closed are open:\n" + "\n".join(failed)


def allowed_points(within: list, source: Endpoint, target: Endpoint, here: Analysed) -> set | None:
    """The (protocol, port) connections ``within`` grants from source to target; None: all of them."""
    points: set[tuple[str, int]] = set()
    for flow in within:
        sources = [e for name in flow.sources for e in here.resolve(name, strict=False)]
        targets = [e for name in flow.targets for e in here.resolve(name, strict=False)]
        if source in sources and any(target.holds(t) for t in targets):
            if flow.port is None:
                return None
            points.add((flow.protocol, flow.port))
    return points


@pytest.mark.parametrize("values_set", SETS)
def test_only_the_listed_flows_reach_guarded_pods(table, analysed, values_set):
    here, failed = analysed[values_set], []
    for row in rows(table, "only", here):
        pattern, within = row["parsed"][0], row["parsed"][1:]
        for source, target in here.pairs(pattern):
            conns = here.reach.between(source, target)
            allowed = allowed_points(within, source, target, here)
            if pattern.port is None:
                ok = conns.within(allowed)
            else:  # only the pattern's own port is guarded
                point = (pattern.protocol, pattern.port)
                ok = not conns.allows(*point) or allowed is None or point in allowed
            if not ok:
                failed.append(f"{row['flows']} ({row['why']}): {source.key} -> {target.role} allows {conns}")
    assert not failed, "connections beyond what the table lists:\n" + "\n".join(failed)


def scraped_ports(objects: list[dict]) -> set[tuple[str, int]]:
    """``(role, port)`` of every pod port a rendered ServiceMonitor scrapes."""
    world = build_world(objects, {}, {})
    found = set()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        wanted = monitor["spec"]["selector"].get("matchLabels", {})
        names = {e["port"] for e in monitor["spec"]["endpoints"]}
        for service in (o for o in objects if o["kind"] == "Service"):
            if not wanted.items() <= service["metadata"].get("labels", {}).items():
                continue
            selector = service["spec"].get("selector", {}).items()
            for port in (p for p in service["spec"]["ports"] if p.get("name") in names):
                target = port.get("targetPort", port["port"])
                for pod in (e for e in world.release if selector <= e.labels.items()):
                    found.add((pod.role, pod.ports[target] if isinstance(target, str) else target))
    return found


@pytest.mark.parametrize("values_set", SETS)
def test_prometheus_reaches_every_port_a_servicemonitor_scrapes(table, analysed, rendered, values_set):
    """The table lists every scraped port, and nca finds each open (a new ServiceMonitor needs a row)."""
    here = analysed[values_set]
    listed = {(target, flow.port) for row in rows(table, "allow", here) for flow in row["parsed"]
              if "prometheus" in flow.sources for target in flow.targets}  # fmt: skip
    scraped = scraped_ports(objects_of(rendered, values_set))
    assert scraped or not here.values["monitoring"]["enabled"], "no ServiceMonitor rendered"
    missing = sorted(f"prometheus -> {role}:{port}" for role, port in scraped - listed)
    assert not missing, f"flows.yaml has no allow row for {missing}"
    prometheus = here.world.role("prometheus")[0]
    for role, port in scraped:
        for pod in here.world.role(role):
            assert here.reach.between(prometheus, pod).allows("TCP", port), f"prometheus -> {pod.key}:{port}"


def test_every_row_applies_to_some_values_set(table):
    values = [merged_values(name) for name in SETS]
    dead = [row.get("flow", row.get("flows")) for kind in ("allow", "deny", "only") for row in table[kind]
            if not any(applies(row, v) for v in values)]  # fmt: skip
    assert not dead, f"rows no ci/*-values.yaml checks (drop them or add a values set): {dead}"


def test_the_reader_follows_nca_on_port_ranges_protocols_and_excepted_addresses(nca, tmp_path):
    """connectivity.py's reading of nca's output, on a small world whose answers are known by hand."""
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "a", "namespace": "lathe"},
              "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"], "egress": [
                  {"to": [{"podSelector": {"matchLabels": {"app": "b"}}}],
                   "ports": [{"protocol": "TCP", "port": 1000, "endPort": 2000}, {"protocol": "UDP", "port": 53}]},
                  {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                   "ports": [{"protocol": "TCP", "port": 443}]}]}}  # fmt: skip
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "a.yaml").write_text(yaml.safe_dump(policy))
    outside = {name: {"namespace": "lathe", "labels": {"app": name}} for name in ("a", "b", "c")}
    addresses = {"inside": "10.2.3.4", "excepted": "10.1.2.3", "public": "52.216.1.1"}
    world = build_world([], outside, addresses)
    reach = connectivity(nca, {"small": (tmp_path / "policies", world)}, tmp_path / "nca")["small"]
    a, b, c = (world.role(name)[0] for name in ("a", "b", "c"))
    a_to_b = reach.between(a, b)
    assert a_to_b.allows("TCP", 1000) and a_to_b.allows("TCP", 2000) and a_to_b.allows("UDP", 53)
    assert not a_to_b.allows("TCP", 999) and not a_to_b.allows("TCP", 2001) and not a_to_b.allows("UDP", 54)
    assert not a_to_b.allows("SCTP", 1500) and not a_to_b.within({("TCP", 1000), ("UDP", 53)})
    assert not reach.between(a, c).texts, "a's egress names b only"
    assert reach.between(b, c).everything and not reach.between(b, c).within({("TCP", 80)}), "no policy selects b"
    inside, excepted, public = (world.role(name)[0] for name in ("inside", "excepted", "public"))
    assert reach.between(a, inside).allows("TCP", 443) and not reach.between(a, inside).allows("TCP", 80)
    assert reach.between(a, inside).within({("TCP", 443)})
    assert not reach.between(a, excepted).texts and not reach.between(a, public).texts
