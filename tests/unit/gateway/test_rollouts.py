"""Rollouts: the spec's validation, the windows and the step decision, the store and the lease."""

from __future__ import annotations

import random
import time

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine

from services.gateway.rollouts.analysis import Window, judge_step
from services.gateway.rollouts.judge import parse_grade, question_and_answer
from services.gateway.rollouts.spec import RolloutSpec, Step, Thresholds
from services.gateway.rollouts.store import RolloutStore
from services.gateway.routing import Backend, CircuitBreaker, LeastOutstanding, ModelPool


def spec(**kw) -> RolloutSpec:
    return RolloutSpec.model_validate({"model": "m", "version": "2", **kw})


def test_default_steps_and_a_closing_100_is_the_promotion():
    assert [s.weight for s in spec().steps] == [5, 25, 50]
    assert [s.weight for s in spec(steps=[{"weight": 10}, {"weight": 100}]).steps] == [10]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"steps": [{"weight": 50}, {"weight": 25}]}, "steps"),
        ({"steps": [{"weight": 100}]}, "steps"),
        ({"steps": [{"weight": -5}]}, "steps.0.weight"),
        ({"steps": [{"weight": 150}]}, "steps.0.weight"),
        ({"thresholds": {"max_error_rate_delta": -1}}, "thresholds.max_error_rate_delta"),
        ({"thresholds": {"max_error_rate_delta": 101}}, "thresholds.max_error_rate_delta"),
        ({"thresholds": {"max_ttft_p95_ratio": 0.5}}, "thresholds.max_ttft_p95_ratio"),
        ({"thresholds": {"max_quality_drop": 2}}, "thresholds.max_quality_drop"),
        ({"version": "v2"}, "version"),
        ({"judge": {"model": "j", "sample_rate": 0}}, "judge.sample_rate"),
    ],
)
def test_senseless_specs_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        spec(**body)
    assert ".".join(str(p) for p in caught.value.errors()[0]["loc"]) == field


def test_p95_of_merged_windows_is_within_ten_percent():
    rng = random.Random(7)
    samples = [rng.uniform(0.01, 2.0) for _ in range(4000)]
    a, b = Window(), Window()
    for i, s in enumerate(samples):
        (a if i % 2 else b).record(True, ttft_s=s)
    a.add(Window.from_json(b.to_json()))
    true = sorted(samples)[int(0.95 * len(samples)) - 1]
    assert a.requests == 4000
    assert true <= Window.p95(a.ttft) <= true * 1.1 + 1e-9


def window(requests=0, errors=0, ttft=None, quality=None) -> Window:
    w = Window()
    for i in range(requests):
        w.record(i >= errors, ttft_s=ttft)
    for q in quality or []:
        w.score(q)
    return w


STEP = Step(weight=25, min_duration_s=10, min_requests=20)
LIMITS = Thresholds(max_error_rate_delta=2, max_ttft_p95_ratio=1.5, min_latency_samples=5, min_quality_samples=5)


def test_a_good_candidate_waits_for_time_and_requests_then_advances():
    good, base = window(30, ttft=0.1), window(90, ttft=0.1)
    assert judge_step(STEP, LIMITS, base, good, elapsed_s=3).action == "wait"
    assert judge_step(STEP, LIMITS, base, window(10, ttft=0.1), elapsed_s=30).action == "wait"
    assert judge_step(STEP, LIMITS, base, good, elapsed_s=30).action == "advance"


@pytest.mark.parametrize(
    ("candidate", "words"),
    [
        (window(30, errors=6, ttft=0.1), "error rate 20.0 %"),
        (window(30, ttft=0.4), "TTFT p95"),
        (window(30, ttft=0.1, quality=[0.2] * 6), "quality 0.20"),
    ],
)
def test_a_bad_candidate_is_rolled_back_before_the_step_ends(candidate, words):
    base = window(90, ttft=0.1, quality=[0.9] * 6)
    verdict = judge_step(STEP, LIMITS, base, candidate, elapsed_s=1)
    assert verdict.action == "rollback" and words in verdict.reason


def test_a_latency_ratio_needs_a_real_difference_too():
    base = window(90, ttft=0.007)
    noisy = window(30, ttft=0.023)  # ×3 but 16 ms: noise on a fast backend, not a regression
    assert judge_step(STEP, LIMITS, base, noisy, elapsed_s=30).action == "advance"
    strict = LIMITS.model_copy(update={"min_ttft_delta_s": 0.0})
    assert judge_step(STEP, strict, base, noisy, elapsed_s=30).action == "rollback"


def test_few_errors_or_samples_are_not_yet_a_verdict():
    base = window(90, ttft=0.1)
    assert judge_step(STEP, LIMITS, base, window(3, errors=3, ttft=0.1), elapsed_s=1).action == "wait"
    assert judge_step(STEP, LIMITS, base, window(3, ttft=9.0), elapsed_s=1).action == "wait"


@pytest.fixture
def store(tmp_path):
    return RolloutStore(create_engine(f"sqlite:///{tmp_path / 'gw.db'}"))


def test_transitions_are_compare_and_set(store):
    rollout = store.create(spec(), champion="1", history=[])
    assert store.transition(rollout, "waiting", 0, state="running", step_started_at=time.time())
    assert not store.transition(rollout, "waiting", 0, state="rolled_back")  # someone moved it
    assert store.get(rollout.id).state == "running"
    assert store.current()["m"].id == rollout.id


def test_windows_add_up_over_replicas(store):
    store.save_windows("a", {("r1", 0, "2"): window(10, errors=1)})
    store.save_windows("b", {("r1", 0, "2"): window(5, errors=2)})
    store.save_windows("a", {("r1", 0, "2"): window(12, errors=1)})  # running totals replace
    total = store.windows("r1", 0)["2"]
    assert (total.requests, total.errors) == (17, 3)


def test_one_leader_until_its_lease_lapses(store):
    assert store.hold_lease("leader", "a", ttl_s=0.3)
    assert not store.hold_lease("leader", "b", ttl_s=0.3)
    assert store.hold_lease("leader", "a", ttl_s=0.3)  # renewed
    deadline = time.monotonic() + 5
    while not store.hold_lease("leader", "b", ttl_s=0.3):
        assert time.monotonic() < deadline
    assert not store.hold_lease("leader", "a", ttl_s=0.3)


def test_request_ledger_finds_and_forgets(store):
    store.record_requests([("req-1", "m", "2")], keep_s=3600)
    assert store.find_request("req-1") == ("m", "2")
    assert store.find_request("req-2") is None
    store.record_requests([("req-3", "m", "1")], keep_s=-1)  # everything older than now goes
    assert store.find_request("req-1") is None


def pool() -> ModelPool:
    backends = [
        Backend(f"http://b{i}", "m", v, 100.0, "m", CircuitBreaker(3, 5.0)) for i, v in enumerate(["1", "1", "2"])
    ]
    return ModelPool("m", LeastOutstanding(), backends, random.Random(3))


def test_a_canary_share_is_the_traffic_share():
    p = pool()
    p.canary = ("2", 20.0)
    drawn = [p.choose("k").version for _ in range(4000)]
    assert 0.17 < drawn.count("2") / len(drawn) < 0.23


def test_a_session_stays_on_its_version_as_the_canary_grows():
    p = pool()
    p.canary = ("2", 10.0)
    sessions = [f"user-{i}" for i in range(2000)]
    first = {s: p.choose("k", sticky=s).version for s in sessions}
    assert all(p.choose("k", sticky=s).version == first[s] for s in sessions[:200])
    p.canary = ("2", 50.0)
    later = {s: p.choose("k", sticky=s).version for s in sessions}
    assert all(later[s] == "2" for s in sessions if first[s] == "2")
    assert 0.45 < sum(v == "2" for v in later.values()) / len(sessions) < 0.55


def test_judge_reads_the_grade_and_the_question():
    assert parse_grade("8") == 0.8 and parse_grade("Grade: 10/10") == 1.0 and parse_grade("no idea") is None
    request = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "why?"}]}
    response = {"choices": [{"message": {"role": "assistant", "content": "because"}}]}
    assert question_and_answer(request, response) == ("why?", "because")
