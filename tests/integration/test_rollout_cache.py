"""The rollouts' copy in a real Redis: what replicas read between database reads, why an
older copy never replaces a newer one, and the database taking over when Redis is empty
or gone."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from sqlalchemy import create_engine

from services.gateway.rollouts.cache import CurrentRollouts, RolloutCache
from services.gateway.rollouts.spec import RolloutSpec
from services.gateway.rollouts.store import RolloutStore
from tests.integration.gateway_support import redis_server_on

pytestmark = [pytest.mark.integration]


redis_server = redis_server_on(28382)


@pytest.fixture
def redis_url(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def store(tmp_path):
    return RolloutStore(create_engine(f"sqlite:///{tmp_path / 'gw.db'}"))


def spec(model: str = "m", version: str = "2") -> RolloutSpec:
    return RolloutSpec.model_validate({"model": model, "version": version})


def run(coroutine):
    return asyncio.run(coroutine)


def moved(store: RolloutStore, rollout, event: str, **changes):
    """A transition as the controller writes it: in the database, the history one longer."""
    history = [*rollout.history, {"event": event, "at": time.time()}]
    assert store.transition(rollout, rollout.state, rollout.step, history=history, **changes)
    return store.get(rollout.id)


def test_a_copy_reads_back_whole_and_empty_is_not_missing(redis_url, store):
    async def scenario():
        cache = RolloutCache(redis_url)
        assert await cache.read() is None  # never filled: the database must be read
        assert await cache.put([], full=True) == 0
        assert await cache.read() == {}  # filled, and no model has a rollout
        rollout = store.create(spec(), champion="1", history=[{"event": "created"}])
        await cache.put([rollout])
        copy = (await cache.read())["m"]
        await cache.close()
        return rollout, copy

    rollout, copy = run(scenario())
    assert copy == rollout
    assert copy.spec.steps == rollout.spec.steps and copy.weight() == rollout.weight()


def test_an_older_copy_landing_late_does_not_replace_a_newer_one(redis_url, store):
    first = store.create(spec(), champion="1", history=[{"event": "created"}])
    running = moved(store, first, "started", state="running", step_started_at=time.time())
    ended = moved(store, running, "rollback", state="rolled_back")
    second = store.create(spec(version="3"), champion="1", history=[{"event": "created"}])

    async def scenario():
        cache = RolloutCache(redis_url)
        await cache.put([running], full=True)
        seen = [(await cache.read())["m"].state]
        await cache.put([ended])
        await cache.put([running])  # a replica that read the row before the rollback writes last
        seen.append((await cache.read())["m"].state)
        await cache.put([second])
        await cache.put([ended])  # the ended rollout is older than the model's newest one
        newest = (await cache.read())["m"]
        seen.append((newest.version, newest.state))
        await cache.close()
        return seen

    assert run(scenario()) == ["running", "rolled_back", ("3", "waiting")]


def test_replicas_read_the_copy_and_the_database_only_when_due(redis_url, store):
    rollout = store.create(spec(), champion="1", history=[{"event": "created"}])

    async def scenario():
        current = CurrentRollouts(store, RolloutCache(redis_url), reconcile_s=3600)
        seen = [(await current.read())["m"].state]  # first read: the database, copied to Redis
        started = moved(store, rollout, "started", state="running", step_started_at=time.time())
        seen.append((await current.read())["m"].state)  # the copy, which nobody updated
        await current.copy([started])  # the transition's writer copies it
        seen.append((await current.read())["m"].state)
        moved(store, started, "rollback", state="rolled_back")  # written, never copied
        current.stale()  # a decision found the copy behind
        seen.append((await current.read())["m"].state)
        redis.Redis.from_url(redis_url).flushall()  # Redis restarted empty
        refilled = await current.read()
        seen.append(refilled["m"].state)
        await current.close()
        return seen

    assert run(scenario()) == ["waiting", "waiting", "running", "rolled_back", "rolled_back"]
    assert redis.Redis.from_url(redis_url).exists("lathe:rollouts:synced")


def test_without_redis_the_database_answers(store, caplog):
    rollout = store.create(spec(), champion="1", history=[{"event": "created"}])

    async def scenario():
        current = CurrentRollouts(store, RolloutCache("redis://127.0.0.1:1/0"), reconcile_s=3600)
        first = (await current.read())["m"].state
        moved(store, rollout, "started", state="running", step_started_at=time.time())
        second = (await current.read())["m"].state  # no copy to trust: the database again
        await current.close()
        return first, second

    assert run(scenario()) == ("waiting", "running")
    warnings = [r for r in caplog.records if "copy in Redis is unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once, not on every tick
