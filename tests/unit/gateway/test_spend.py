"""Teams and money budgets: a request reserves its worst cost on its key's and its team's
budgets, the real cost replaces it, and a budget is never overspent, however the requests
interleave; spend is reported by model and period, written to the audit log and exported
for the budget alerts."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sqlite3
import time

import pytest

from services.gateway.keys import KeyStore
from services.gateway.quotas import BudgetExceededError, InProcessLimiter, Limits
from services.gateway.spend import MoneyLimit, Price, SpendBudget, period_start
from tests.unit.gateway.test_guardrails import ADMIN_KEY, _chat, _gateway, _key, backend  # noqa: F401

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# The planting backend answers 12 prompt and 9 completion tokens: $0.03 at these prices.
PRICES = {"m": {"prompt": 1.0, "completion": 2.0}}


async def nothing(_) -> int:
    return 0


def _priced(tmp_path, backend: str):  # noqa: F811
    return _gateway(tmp_path, backend, [], prices=PRICES, template_overhead_tokens=0, spend_refresh_s=0.05)


def test_price_counts_micro_dollars_exactly_and_rounds_up():
    price = Price(prompt=0.15, completion=0.6)
    assert price.cost_micro(1000, 1000) == 750_000
    assert price.cost_micro(1, 0) == 150  # $0.00015
    assert Price(prompt=0.001, completion=0).cost_micro(1, 0) == 1  # a millionth of a cent rounds up, never down
    assert sum(price.cost_micro(12, 9) for _ in range(1_000_000)) == 1_000_000 * price.cost_micro(12, 9)


def test_a_team_budget_admits_what_fits_then_refuses_naming_the_team(tmp_path, backend):  # noqa: F811
    with _priced(tmp_path, backend) as client:
        made = client.post("/admin/teams", json={"name": "research", "budgets": [{"usd": 0.2, "period": "day"}]},
                           headers=ADMIN)  # fmt: skip
        assert made.status_code == 201, made.text
        first = _key(client, "r1", team="research")
        second = _key(client, "r2", team="research")
        # Each request reserves "Hello" (5 tokens) at $1/1k + 16 max_tokens at $2/1k = $0.037 and costs $0.03:
        # six fit in $0.20 ($0.18 spent), the seventh would reserve past it.
        statuses = [_chat(client, first, "Hello").status_code for _ in range(6)]
        refused = _chat(client, second, "Hello")  # the team's other key draws on the same budget
        assert statuses == [200] * 6 and refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota" and "team research's $0.2/day budget" in error["message"]
        assert _chat(client, _key(client, "loner"), "Hello").status_code == 200  # no team, no budget

        usage = client.get("/admin/teams/research/usage", headers=ADMIN).json()
        assert usage["requests"] == 6 and usage["spend_usd"]["day"] == pytest.approx(0.18)
        assert usage["by_model"] == [{"model": "m", "requests": 6, "prompt_tokens": 72, "completion_tokens": 54,
                                      "spend_usd": pytest.approx(0.18)}]  # fmt: skip
        assert usage["spend_budgets"] == [{"usd": 0.2, "period": "day", "spent_usd": pytest.approx(0.18),
                                           "left_usd": pytest.approx(0.02)}]  # fmt: skip
        key_usage = client.get("/admin/keys/r1/usage", headers=ADMIN).json()
        assert key_usage["team"] == "research" and key_usage["spend_usd"]["total"] == pytest.approx(0.18)

        audit = client.get("/admin/audit", params={"key": "r2"}, headers=ADMIN).json()["data"]
        assert [(r["team"], r["status"], r["spend"]) for r in audit] == [("research", 429, None)]
        answered = client.get("/admin/audit", params={"key": "loner"}, headers=ADMIN).json()["data"]
        assert answered[0]["team"] is None and answered[0]["spend"] == pytest.approx(0.03)

        metrics = client.app.state.metrics
        assert metrics.spend.labels(team="research", key="r1", model="m")._value.get() == pytest.approx(0.18)
        deadline = time.monotonic() + 10  # the gauges are read from the database every spend_refresh_s
        gauge = metrics.spend_period.labels(scope="team", owner="research", period="day")
        while gauge._value.get() != pytest.approx(0.18):
            assert time.monotonic() < deadline, "the team's spend gauge never reached $0.18"
            time.sleep(0.05)
        assert metrics.budget.labels(scope="team", owner="research", period="day")._value.get() == 0.2


def test_a_key_budget_needs_prices_for_every_model_it_may_use(tmp_path, backend):  # noqa: F811
    with _gateway(tmp_path, backend, []) as client:  # no prices at all
        refused = client.post("/admin/keys", json={"name": "k", "spend_budgets": [{"usd": 5}]}, headers=ADMIN)
        assert refused.status_code == 400 and "model 'm' has no price" in refused.json()["error"]["message"]
        assert refused.json()["error"]["param"] == "models"
        assert client.post("/admin/keys", json={"name": "k", "team": "nobody"}, headers=ADMIN).status_code == 404
        for budgets, field in (([{"usd": 0}], "budgets.0.usd"), ([{"usd": 1, "period": "week"}], "budgets.0.period"),
                               ([{"usd": 1, "period": "day"}, {"usd": 2, "period": "day"}], "budgets")):  # fmt: skip
            bad = client.post("/admin/teams", json={"name": "t", "budgets": budgets}, headers=ADMIN)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == field, bad.text
        assert client.get("/admin/teams", headers=ADMIN).json() == {"data": []}  # nothing half-made


def test_forty_concurrent_requests_never_overspend_a_money_budget():
    limiter = InProcessLimiter(nothing, money_spent=nothing)
    budget = MoneyLimit("team", "t", "month", 500_000, dt.datetime(2026, 12, 1), "team t's $0.5/month budget")
    limits = Limits(money=(budget,))
    actual: list[int] = []

    async def one() -> None:
        try:
            reservation = await limiter.reserve("k", 50, limits, cost=37_000)
        except BudgetExceededError:
            return
        await asyncio.sleep(random.random() / 100)  # the answer takes its time; others reserve meanwhile
        cost = random.randint(20_000, 37_000)
        await limiter.reconcile(reservation, 40, cost)
        actual.append(cost)

    async def race() -> None:
        for _ in range(3):  # three waves of forty
            await asyncio.gather(*(one() for _ in range(40)))

    asyncio.run(race())
    assert sum(actual) <= budget.limit
    assert sum(actual) > budget.limit - 37_000 * 2  # and it is spent, not refused early: within one request or so


def test_a_new_day_starts_from_what_the_database_says_was_spent():
    spent = {"2026-12-06": 90_000, "2026-12-07": 0}
    loads = []

    async def from_database(limit: MoneyLimit) -> int:
        loads.append(limit.counter)
        return spent[limit.since.strftime("%Y-%m-%d")]

    limiter = InProcessLimiter(nothing, money_spent=from_database)

    def day(date: str) -> Limits:
        since = dt.datetime.fromisoformat(date)
        return Limits(money=(MoneyLimit("key", "k", "day", 100_000, since, "key k's $0.1/day budget"),))

    async def scenario() -> None:
        await limiter.reserve("k", 1, day("2026-12-06"), cost=10_000)
        with pytest.raises(BudgetExceededError, match=r"key k's \$0.1/day budget"):
            await limiter.reserve("k", 1, day("2026-12-06"), cost=1)
        await limiter.reserve("k", 1, day("2026-12-07"), cost=99_000)  # a new day: a new counter

    asyncio.run(scenario())
    assert loads == ["key:k:day:2026-12-06", "key:k:day:2026-12-07"]  # once per period, not per request


def test_a_database_from_before_spend_gains_its_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY, name VARCHAR(128), key_hash VARCHAR(64), "
                   "key_prefix VARCHAR(16), models JSON, rpm INTEGER, tpm INTEGER, budget INTEGER, max_tokens INTEGER, "
                   "tools JSON, expires_at DATETIME, revoked_at DATETIME, created_at DATETIME)")  # fmt: skip
        db.execute("CREATE TABLE usage (id INTEGER PRIMARY KEY, key_id VARCHAR(32), model VARCHAR(256), prompt_tokens "
                   "INTEGER, completion_tokens INTEGER, status INTEGER, created_at DATETIME)")  # fmt: skip
        db.execute("INSERT INTO api_keys VALUES ('k1', 'old', 'h', 'lk-old', '[]', NULL, NULL, NULL, NULL, '[]', "
                   "NULL, NULL, '2026-01-01 00:00:00')")  # fmt: skip
        db.execute("INSERT INTO usage VALUES (1, 'k1', 'm', 10, 5, 200, '2026-01-02 00:00:00')")
    store = KeyStore(f"sqlite:///{path}")
    KeyStore(f"sqlite:///{path}")  # opening it again changes nothing
    report = store.usage("old")
    assert report["total_tokens"] == 15 and report["spend_usd"]["total"] == 0 and report["team"] is None
    store.record_usage([("k1", "m", 1, 1, 200, 2500, None)])
    assert store.usage("old")["spend_usd"]["total"] == 0.0025
    store.engine.dispose()


def test_budgets_are_usd_per_calendar_period():
    assert SpendBudget.model_validate({"usd": 50}).label() == "$50/month"
    now = dt.datetime(2026, 12, 7, 15, 30)
    assert period_start("day", now) == dt.datetime(2026, 12, 7)
    assert period_start("month", now) == dt.datetime(2026, 12, 1)
    assert period_start("total", now) is None
