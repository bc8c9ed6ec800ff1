import asyncio

from services.agent.memory import Conversation, RedisMemory, SqlMemory, open_memory, trim
from services.agent.schemas import Run


def _turns(n):
    turns = []
    for i in range(n):
        turns += [
            {"role": "user", "content": f"question {i} " + "word " * 40},
            {"role": "assistant", "content": f"answer {i} " + "word " * 40},
        ]
    return turns


def test_trim_folds_the_oldest_turns_into_a_summary_within_budget():
    conversation = Conversation(turns=_turns(6))
    assert conversation.tokens() > 300
    trimmed = trim(conversation, 300)
    assert trimmed.tokens() <= 300
    # the newest exchange is kept word for word; the oldest ones live on as summary lines
    assert trimmed.turns[-2:] == conversation.turns[-2:]
    assert trimmed.summary.splitlines()[0].startswith("- user: question ")
    assert "answer" in trimmed.summary
    kept_and_summarised = len(trimmed.turns) + len(trimmed.summary.splitlines())
    assert kept_and_summarised <= len(conversation.turns)


def test_trim_leaves_a_small_conversation_alone():
    conversation = Conversation(turns=_turns(1))
    assert trim(conversation, 10_000) == conversation


def test_sql_memory_persists_sessions_and_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'agent.db'}"

    async def scenario():
        store = SqlMemory(url)
        await store.save("s1", Conversation("- user: hi", [{"role": "user", "content": "x"}]))
        await store.save("s1", Conversation("- user: hi", [{"role": "user", "content": "y"}]))
        run = Run(agent="assistant", session_id="s1", model="m", protocol="react", status="completed", answer="4")
        await store.save_run(run)
        await store.close()
        reopened = SqlMemory(url)  # a new process sees the same state
        try:
            return await reopened.load("s1"), await reopened.get_run(run.id), await reopened.get_run("nope"), run.id
        finally:
            await reopened.close()

    conversation, record, missing, run_id = asyncio.run(scenario())
    assert conversation == Conversation("- user: hi", [{"role": "user", "content": "y"}])
    assert record["id"] == run_id and record["answer"] == "4" and record["status"] == "completed"
    assert missing is None


class FakeRedis:
    def __init__(self):
        self.data, self.ttl = {}, {}

    async def get(self, key):
        return self.data.get(key)

    async def set(self, key, value, ex=None):
        self.data[key] = value.encode()
        self.ttl[key] = ex

    async def aclose(self):
        pass


def test_redis_memory_stores_json_with_a_ttl():
    fake = FakeRedis()
    store = RedisMemory(fake, ttl_s=3600)

    async def scenario():
        await store.save("s9", Conversation("", [{"role": "user", "content": "hi"}]))
        await store.save_run(Run(id="run_1", agent="a", session_id="s9", model="m", protocol="react"))
        return await store.load("s9"), await store.get_run("run_1"), await store.load("unknown")

    conversation, record, empty = asyncio.run(scenario())
    assert conversation.turns == [{"role": "user", "content": "hi"}]
    assert record["session_id"] == "s9"
    assert empty == Conversation()
    assert fake.ttl == {"lathe:agent:session:s9": 3600, "lathe:agent:run:run_1": 3600}


def test_memory_url_picks_the_store(agent_settings, tmp_path):
    redis_store = open_memory(agent_settings(memory_url="redis://127.0.0.1:1/0"))
    assert isinstance(redis_store, RedisMemory)
    store = open_memory(agent_settings())
    assert isinstance(store, SqlMemory)
    assert (tmp_path / "agent" / "agent.db").exists()
    asyncio.run(store.close())
    asyncio.run(redis_store.close())
