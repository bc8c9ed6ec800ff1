import random
from collections import Counter

import pytest

from lathe.errors import EngineUnavailableError, ModelNotFoundError
from services.gateway.routing import (
    Backend,
    CircuitBreaker,
    LeastOutstanding,
    ModelPool,
    PrefixAffinity,
    RoundRobin,
    Router,
)
from services.gateway.settings import RoutesConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def backend(url, version="1", weight=100.0, clock=None):
    return Backend(url, "m", version, weight, "m", CircuitBreaker(3, 5.0, clock or Clock()))


def test_breaker_opens_after_failures_and_half_opens_after_the_reset():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=5.0, clock=clock)
    for _ in range(2):
        breaker.on_failure()
    assert breaker.state == "closed"
    breaker.on_failure()
    assert breaker.state == "open" and not breaker.allows()
    clock.now = 5.0
    assert breaker.state == "half_open" and breaker.allows()
    breaker.on_attempt()
    assert not breaker.allows()  # one trial at a time
    breaker.on_failure()
    assert breaker.state == "open"  # a failed trial opens it again
    clock.now = 10.0
    breaker.on_attempt()
    breaker.on_success()
    assert breaker.state == "closed" and breaker.allows()


def test_a_tripped_breaker_opens_at_once_and_recovers_after_the_reset():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=5.0, clock=clock)
    breaker.trip()  # a stream broken off: no need to wait for two more failures
    assert breaker.state == "open" and not breaker.allows()
    clock.now = 5.0
    assert breaker.state == "half_open" and breaker.allows()
    breaker.on_attempt()
    breaker.on_success()
    assert breaker.state == "closed"


def test_round_robin_takes_turns():
    backends = [backend("a"), backend("b"), backend("c")]
    policy = RoundRobin()
    picks = Counter(policy.choose(backends, "").url for _ in range(300))
    assert picks == {"a": 100, "b": 100, "c": 100}


def test_least_outstanding_prefers_the_idle_backend():
    busy, idle = backend("busy"), backend("idle")
    busy.outstanding = 5
    assert {LeastOutstanding().choose([busy, idle], "").url for _ in range(20)} == {"idle"}


def test_prefix_affinity_is_stable_and_moves_few_keys_when_a_backend_leaves():
    three = [backend("a"), backend("b"), backend("c")]
    policy = PrefixAffinity()
    keys = [f"prompt-{i}" for i in range(300)]
    before = {k: policy.choose(three, k).url for k in keys}
    assert before == {k: policy.choose(three, k).url for k in keys}
    assert set(before.values()) == {"a", "b", "c"}
    after = {k: policy.choose(three[:2], k).url for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == "c" for k in moved)  # only the leaver's keys move


def test_canary_weights_split_traffic():
    pool = ModelPool("m", LeastOutstanding(), [backend("a", "1", 90), backend("b", "2", 10)], random.Random(7))
    share = Counter(pool.choose("").version for _ in range(5000))["2"] / 5000
    assert abs(share - 0.10) < 0.02


def test_unavailable_backends_are_skipped_and_none_left_is_a_503():
    a, b = backend("a"), backend("b")
    pool = ModelPool("m", RoundRobin(), [a, b])
    a.healthy = False
    assert {pool.choose("").url for _ in range(10)} == {"b"}
    with pytest.raises(EngineUnavailableError):
        pool.choose("", exclude={"b"})


def test_router_from_config_and_canary_update():
    routes = RoutesConfig.model_validate(
        {
            "models": {
                "m": {
                    "policy": "round_robin",
                    "backends": [
                        {"url": "http://a:1/", "version": "1"},
                        {"url": "http://b:1", "version": "2", "weight": 0, "upstream_model": "m-v2"},
                    ],
                }
            }
        }
    )
    router = Router.from_config(routes, breaker_failures=3, breaker_reset_s=5)
    pool = router.pool("m")
    assert [b.url for b in pool.backends] == ["http://a:1", "http://b:1"]
    assert isinstance(pool.policy, RoundRobin)
    assert pool.backends[1].upstream_model == "m-v2"
    assert {pool.choose("").version for _ in range(50)} == {"1"}  # weight 0: no traffic
    assert router.set_canary("m", "2", 25) == {"1": 75.0, "2": 25.0}
    with pytest.raises(ModelNotFoundError, match="models: m"):
        router.pool("other")
    with pytest.raises(ModelNotFoundError, match="no backend for version '9'"):
        router.set_canary("m", "9", 10)


def test_servable_versions_are_those_a_request_may_reach():
    """What the gateway counts a prompt for: versions of available backends with a share."""
    stable, idle, down = backend("a", "1"), backend("b", "auto", weight=0), backend("c", "3")
    down.healthy = False
    pool = ModelPool("m", RoundRobin(), [stable, idle, down])
    assert pool.servable_versions() == ["1"]
    pool.canary = ("auto", 25.0)  # a candidate given a share counts too
    assert pool.servable_versions() == ["1", "auto"]
    stable.healthy = False
    pool.canary = None
    assert pool.servable_versions() == ["auto"]  # only the idle one left: choose takes it
