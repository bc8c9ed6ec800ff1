"""The agent's Redis memory (the cluster's store) against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from services.agent.memory import Conversation, RedisMemory
from services.agent.schemas import Run
from tests.integration.gateway_support import RedisServer

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(27391, tmp_path_factory.mktemp("agent-redis"))
    yield server.url.replace("/0", "/1")  # the agent's database, as the chart configures it
    server.stop()


def test_conversations_and_runs_round_trip_with_a_ttl(redis_url):
    import redis

    async def scenario():
        store = RedisMemory.from_url(redis_url, ttl_s=600)
        try:
            await store.save("s1", Conversation("earlier: asked about paths", [{"role": "user", "content": "hi"}]))
            await store.save_run(Run(id="run_abc", agent="assistant", session_id="s1", model="m", protocol="react"))
            return await store.load("s1"), await store.get_run("run_abc"), await store.load("nobody")
        finally:
            await store.close()

    conversation, record, empty = asyncio.run(scenario())
    assert conversation.summary == "earlier: asked about paths"
    assert conversation.turns == [{"role": "user", "content": "hi"}]
    assert record["id"] == "run_abc" and record["session_id"] == "s1"
    assert empty == Conversation()
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl("lathe:agent:session:s1") <= 600
    assert 0 < client.ttl("lathe:agent:run:run_abc") <= 600
