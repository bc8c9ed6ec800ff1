"""Rollouts on real processes: gateways, light OpenAI backends that report their version,
a real MLflow (the package's platform) and Redis. Timings are small but real: no clock
is mocked; every wait is bounded by a deadline."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from lathe.registry import ModelRegistry
from tests.integration.gateway_support import Gateway, Stub, redis_server_on
from tests.support.platform import run_lathe

pytestmark = [pytest.mark.integration]

PORTS = {"champ": 28701, "good": 28702, "errors": 28703, "slow": 28704, "worse": 28705, "judge": 28706}
MODELS = ("ro-good", "ro-errors", "ro-slow", "ro-worse", "ro-ha", "ro-restart", "ro-input")
CANDIDATE = {"ro-good": "good", "ro-errors": "errors", "ro-slow": "slow", "ro-worse": "worse"}
CANDIDATE |= {"ro-ha": "good", "ro-restart": "good", "ro-input": "good"}
FAST = {"LATHE_GATEWAY_ROLLOUT_INTERVAL_S": "0.25", "LATHE_GATEWAY_ROLLOUT_LEASE_S": "1.5"}


@pytest.fixture(scope="module")
def registry(platform, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 1024)
    registry = ModelRegistry(platform.mlflow_uri)
    for model in MODELS:
        registry.register_folder(folder, model, alias="champion")
        registry.register_folder(folder, model)
    return registry


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("stubs")
    started = {
        "champ": Stub(PORTS["champ"], "champ", logs, "--version", "1", "--answer", "GOOD"),
        "good": Stub(PORTS["good"], "good", logs, "--version", "2", "--answer", "GOOD"),
        "errors": Stub(PORTS["errors"], "errors", logs, "--version", "2", "--error-rate", "0.5"),
        "slow": Stub(PORTS["slow"], "slow", logs, "--version", "2", "--delay-ms", "300"),
        "worse": Stub(PORTS["worse"], "worse", logs, "--version", "2", "--answer", "BAD"),
        "judge": Stub(PORTS["judge"], "judge", logs, "--judge"),
    }
    yield started
    for stub in started.values():
        stub.stop()


@pytest.fixture(scope="module")
def routes_file(tmp_path_factory, stubs):
    models = {
        model: {
            "backends": [
                {"url": stubs["champ"].url, "version": "auto"},
                {"url": stubs[candidate].url, "version": "auto", "weight": 0},
            ]
        }
        for model, candidate in CANDIDATE.items()
    }
    models["ro-judge"] = {"backends": [{"url": stubs["judge"].url}]}
    path = tmp_path_factory.mktemp("routes") / "routes.json"
    path.write_text(json.dumps({"models": models}))
    return path


def start_gateway(home, port, routes, platform, **env) -> Gateway:
    return Gateway(home, port, port + 9, routes, LATHE_MLFLOW_TRACKING_URI=platform.mlflow_uri, **FAST, **env)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, routes_file, platform, registry):
    gw = start_gateway(tmp_path_factory.mktemp("gw"), 28600, routes_file, platform)
    yield gw
    gw.stop()


class Clients:
    """A steady stream of chat requests from a few clients; counts versions and failures."""

    def __init__(self, url: str, key: str, model: str, workers: int = 3) -> None:
        self.url, self.key, self.model = url, key, model
        self.versions: Counter = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url + "/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    if not self.stop.is_set():
                        self.failures.append(type(exc).__name__)
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    self.versions[response.headers.get("x-lathe-backend-version")] += 1

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def wait_backends(gw: Gateway, model: str, versions: set[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while {b["version"] for b in gw.admin("GET", "/admin/routes").json()[model] if b["healthy"]} != versions:
        assert time.monotonic() < deadline, gw.admin("GET", "/admin/routes").json()[model]
        time.sleep(0.2)


def rollout_of(gw: Gateway, model: str) -> dict:
    return gw.admin("GET", f"/admin/rollouts?model={model}").json()["data"][0]


def wait_state(gw: Gateway, model: str, states: tuple[str, ...], timeout: float = 45) -> dict:
    deadline = time.monotonic() + timeout
    while (current := rollout_of(gw, model))["state"] not in states:
        assert time.monotonic() < deadline, f"rollout still {current['state']}: {current['history']}"
        time.sleep(0.2)
    return current


def steps(*weights: float, seconds: float = 1.5, requests: int = 10) -> list[dict]:
    return [{"weight": w, "min_duration_s": seconds, "min_requests": requests} for w in weights]


def wait_tag(registry: ModelRegistry, model: str, version: str, value: str, timeout: float = 15) -> None:
    """The MLflow mirror follows the database transition: wait for it, bounded."""
    deadline = time.monotonic() + timeout
    while registry.get_version(model, version).tags.get("lathe.rollout.state") != value:
        assert time.monotonic() < deadline, registry.get_version(model, version).tags
        time.sleep(0.2)


def cli_env(platform, gw: Gateway) -> dict:
    return {**platform.env, "LATHE_GATEWAY_URL": gw.url, "LATHE_GATEWAY_ADMIN_KEY": gw.admin_key}


def test_a_good_candidate_walks_every_step_to_champion_and_back_by_hand(gateway, platform, registry):
    key = gateway.create_key("good-client")
    wait_backends(gateway, "ro-good", {"1", "2"})
    with Clients(gateway.url, key, "ro-good") as clients:
        result = run_lathe(
            ["models", "rollout", "ro-good", "--version", "2", "--steps", "30,60", "--step-seconds", "1.5",
             "--step-requests", "10", "--max-ttft-ratio", "3", "--no-candidate-service", "--wait", "--json"],
            cli_env(platform, gateway), timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        done = json.loads(result.stdout)
        after = Counter()
        for _ in range(20):  # promoted: every request goes to v2
            response = httpx.post(
                gateway.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "ro-good", "messages": [{"role": "user", "content": "x"}]},
            )
            after[response.headers["x-lathe-backend-version"]] += 1
    assert done["state"] == "promoted" and done["champion"] == "1"
    assert [e["event"] for e in done["history"]] == ["created", "started", "advance", "promote"]
    assert all(e["candidate"]["requests"] >= 10 for e in done["history"][2:])
    assert not clients.failures and clients.versions["2"] > 0 and clients.versions["1"] > 0
    assert after == Counter({"2": 20})
    assert registry.resolve("ro-good", "champion").version == "2"
    wait_tag(registry, "ro-good", "2", "candidate:promoted")
    tags = registry.get_version("ro-good", "2").tags
    promote = json.loads(tags[f"lathe.rollout.{done['id']}.4"])
    assert promote["event"] == "promote" and promote["candidate"]["requests"] >= 10
    wait_tag(registry, "ro-good", "1", "champion:promoted")

    back = run_lathe(["models", "rollback", "ro-good", "--reason", "users complain", "--json"],
                     cli_env(platform, gateway), timeout=60)  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["state"] == "rolled_back"
    assert registry.resolve("ro-good", "champion").version == "1"
    wait_backends(gateway, "ro-good", {"1", "2"})
    versions = {
        httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "ro-good", "messages": [{"role": "user", "content": "x"}]}
                   ).headers["x-lathe-backend-version"]
        for _ in range(20)
    }  # fmt: skip
    assert versions == {"1"}
    listed = run_lathe(["models", "rollouts", "ro-good"], cli_env(platform, gateway), timeout=60)
    assert listed.returncode == 0 and "rolled_back" in listed.stdout and "users complain" in listed.stdout


@pytest.mark.parametrize(
    ("model", "words", "judge"),
    [("ro-errors", "error rate", False), ("ro-slow", "TTFT p95", False), ("ro-worse", "quality", True)],
)
def test_a_bad_candidate_rolls_back_by_itself_within_its_first_step(gateway, registry, model, words, judge):
    key = gateway.create_key(f"client-{model}")
    wait_backends(gateway, model, {"1", "2"})
    spec = {
        "model": model,
        "version": "2",
        "steps": steps(30, 60, seconds=60),  # a step this long cannot pass in the test: only a rollback ends it
        "thresholds": {"max_error_rate_delta": 5, "max_ttft_p95_ratio": 3, "min_quality_samples": 5},
        "judge": {"model": "ro-judge", "sample_rate": 1.0} if judge else None,
    }
    with Clients(gateway.url, key, model) as clients:
        created = gateway.admin("POST", "/admin/rollouts", json=spec)
        assert created.status_code == 201, created.text
        done = wait_state(gateway, model, ("promoted", "rolled_back"))
    assert done["state"] == "rolled_back" and words in done["reason"], done["reason"]
    assert [e["event"] for e in done["history"]] == ["created", "started", "rollback"]
    assert not clients.failures  # the failed tries were retried on the champion
    assert registry.resolve(model, "champion").version == "1"
    wait_tag(registry, model, "2", "candidate:rolled_back")
    metrics = httpx.get(gateway.metrics_url).text
    assert f'lathe_rollout_decisions_total{{decision="rollback",model="{model}"}} 1.0' in metrics


redis_server = redis_server_on(28381)


def test_two_replicas_agree_and_the_survivor_finishes_when_the_leader_dies(
    tmp_path, routes_file, platform, registry, redis_server
):
    # The database is read once at start: every later change reaches a replica through Redis.
    shared = {"LATHE_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
              "LATHE_GATEWAY_REDIS_URL": redis_server.url, "LATHE_GATEWAY_ROLLOUT_RECONCILE_S": "600"}  # fmt: skip
    a = start_gateway(tmp_path / "a", 28610, routes_file, platform, **shared)
    b = start_gateway(tmp_path / "b", 28620, routes_file, platform, LATHE_GATEWAY_ADMIN_KEY=a.admin_key, **shared)
    b.admin_key = a.admin_key
    try:
        key = a.create_key("ha-client")
        for gw in (a, b):
            wait_backends(gw, "ro-ha", {"1", "2"})
        spec = {"model": "ro-ha", "version": "2", "steps": steps(20, 40, 60, seconds=2, requests=5),
                "thresholds": {"max_error_rate_delta": 5, "max_ttft_p95_ratio": 3, "max_itl_p95_ratio": 3}}  # fmt: skip
        with ThreadPoolExecutor(2) as pool:  # both replicas asked at once: one rollout, one refusal
            answers = list(pool.map(lambda gw: gw.admin("POST", "/admin/rollouts", json=spec), (a, b)))
        assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
        wait_state(b, "ro-ha", ("running",))
        deadline = time.monotonic() + 10
        while True:  # both replicas split the same way
            shares = [{x["version"]: x["weight"] for x in gw.admin("GET", "/admin/routes").json()["ro-ha"]}
                      for gw in (a, b)]  # fmt: skip
            if shares[0] == shares[1] == {"1": 80.0, "2": 20.0}:
                break
            assert time.monotonic() < deadline, shares
            time.sleep(0.2)
        copy = json.loads(redis.Redis.from_url(redis_server.url).hget("lathe:rollouts:current", "ro-ha"))
        assert (copy["version"], copy["state"]) == ("2", "running")
        leaders = [gw for gw in (a, b) if gw.admin("GET", "/admin/rollouts").json()["leader"]]
        assert len(leaders) == 1
        leader, survivor = leaders[0], (b if leaders[0] is a else a)
        with Clients(survivor.url, key, "ro-ha") as clients:
            time.sleep(0.5)  # traffic before the leader goes
            leader.proc.kill()
            done = wait_state(survivor, "ro-ha", ("promoted", "rolled_back"))
        assert done["state"] == "promoted", done["history"]
        assert not clients.failures
        assert survivor.admin("GET", "/admin/rollouts").json()["leader"]
        assert registry.resolve("ro-ha", "champion").version == "2"
    finally:
        a.stop()
        b.stop()


def test_a_restarted_gateway_resumes_the_rollout_where_it_was(tmp_path, routes_file, platform, registry):
    gw = start_gateway(tmp_path / "gw", 28630, routes_file, platform)
    key = gw.create_key("restart-client")
    wait_backends(gw, "ro-restart", {"1", "2"})
    # The last step cannot pass before the restart, whatever the restart takes: it needs
    # more requests on the candidate than the clients send before they stop.
    spec = {"model": "ro-restart", "version": "2", "steps": [*steps(25, seconds=2, requests=5),
                                                            *steps(50, seconds=2, requests=400)],
            # Wide latency bounds: stand-ins on a loaded 2-core machine are noisy, and this test is about state.
            "thresholds": {"max_error_rate_delta": 5, "max_ttft_p95_ratio": 5, "max_itl_p95_ratio": 5}}  # fmt: skip
    try:
        with Clients(gw.url, key, "ro-restart"):
            assert gw.admin("POST", "/admin/rollouts", json=spec).status_code == 201
            deadline = time.monotonic() + 30
            while rollout_of(gw, "ro-restart")["step"] != 2:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        gw.stop()
        admin_key = gw.admin_key
        gw = Gateway(gw.home, 28630, 28639, routes_file, LATHE_GATEWAY_ADMIN_KEY=admin_key,
                     LATHE_MLFLOW_TRACKING_URI=platform.mlflow_uri, **FAST)  # fmt: skip
        gw.admin_key = admin_key
        resumed = rollout_of(gw, "ro-restart")
        assert resumed["step"] == 2, (resumed["state"], resumed["history"])
        with Clients(gw.url, key, "ro-restart") as clients:
            done = wait_state(gw, "ro-restart", ("promoted", "rolled_back"))
        assert done["state"] == "promoted"
        assert [e["event"] for e in done["history"]] == ["created", "started", "advance", "promote"]
        assert not clients.failures
    finally:
        gw.stop()


def test_bad_input_gets_one_line_and_changes_nothing(gateway, platform, registry):
    def post(body):
        return gateway.admin("POST", "/admin/rollouts", json={"model": "ro-input", **body})

    before = gateway.admin("GET", "/admin/rollouts").json()["data"]
    cases = [
        (post({"version": "99"}), 404, "has no version 99"),
        (post({"version": "1"}), 400, "already @champion"),
        (post({"version": "2", "thresholds": {"max_error_rate_delta": -1}}), 400, "max_error_rate_delta"),
        (post({"version": "2", "steps": [{"weight": 150}]}), 400, "steps.0.weight"),
        (post({"model": "nope", "version": "2"}), 404, "not served"),
    ]
    for response, status, words in cases:
        assert response.status_code == status and words in response.json()["error"]["message"], response.text
    assert gateway.admin("GET", "/admin/rollouts").json()["data"] == before
    result = run_lathe(["models", "rollout", "ro-input", "--version", "99", "--no-candidate-service"],
                       cli_env(platform, gateway), timeout=60)  # fmt: skip
    assert result.returncode != 0 and "has no version 99" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    first = post({"version": "2", "steps": steps(10, seconds=600)})
    assert first.status_code == 201
    second = post({"version": "2"})
    assert second.status_code == 409 and "active rollout already" in second.json()["error"]["message"]
    assert len(gateway.admin("GET", "/admin/rollouts?model=ro-input").json()["data"]) == 1
    assert gateway.admin("POST", "/admin/rollouts/rollback", json={"model": "ro-input"}).status_code == 200


def test_feedback_names_a_request_the_gateway_answered(gateway):
    key = gateway.create_key("feedback-client")
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(gateway.url + "/v1/chat/completions", headers=headers,
                        json={"model": "ro-good", "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    request_id = answer.headers["x-request-id"]
    ok = httpx.post(gateway.url + "/v1/feedback", headers=headers, json={"request_id": request_id, "score": 1})
    assert ok.status_code == 200, ok.text
    assert ok.json()["model"] == "ro-good" and ok.json()["version"] == answer.headers["x-lathe-backend-version"]
    unknown = httpx.post(gateway.url + "/v1/feedback", headers=headers, json={"request_id": "nope", "score": 1})
    assert unknown.status_code == 404 and "no request 'nope'" in unknown.json()["error"]["message"]
    bad = httpx.post(gateway.url + "/v1/feedback", headers=headers, json={"request_id": request_id, "score": 7})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "score"


def test_up_refuses_a_candidate_version_that_is_not_registered(platform):
    """`lathe up --candidate V` on the running platform: an unregistered V is one line, and no candidate runs."""
    result = platform.lathe("up", "--candidate", "99", timeout=300)
    assert result.returncode != 0 and "has no version 99" in result.stderr, result.stderr
    assert "candidate" not in {c["name"] for c in platform.status()["components"]}
