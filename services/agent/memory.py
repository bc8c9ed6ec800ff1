"""Conversations by session id, and the record of every run.

Two stores with one interface: SQL through SQLAlchemy (SQLite under ``.lathe/agent``
locally, PostgreSQL in the cluster) and Redis (keys expire after ``memory_ttl_s``).

A conversation is a summary plus the recent turns. When the turns outgrow the token
budget the oldest ones fold into the summary, one line each. The summary is built
from the turns themselves, not by the model: a 135M model's summaries drift, and a
deterministic one costs no extra generation per run.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from services.agent.schemas import Run
from services.agent.settings import AgentServiceSettings

TURN_CHARS = 160


def estimate_tokens(text: str) -> int:
    # About 4 bytes a token for English with BPE vocabularies, plus the role markers.
    return len(text.encode()) // 4 + 4


@dataclass
class Conversation:
    summary: str = ""
    turns: list[dict[str, str]] = field(default_factory=list)

    def tokens(self) -> int:
        return estimate_tokens(self.summary) + sum(estimate_tokens(t["content"]) for t in self.turns)

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary, "turns": self.turns})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Conversation:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(summary=data.get("summary", ""), turns=list(data.get("turns", [])))


def _line(turn: dict[str, str]) -> str:
    text = " ".join(turn["content"].split())
    return f"- {turn['role']}: {text[:TURN_CHARS]}{'…' if len(text) > TURN_CHARS else ''}"


def trim(conversation: Conversation, budget: int) -> Conversation:
    """Fold the oldest turns into the summary until the whole fits ``budget`` tokens.

    The latest exchange is always kept verbatim; the summary keeps its newest lines.
    """
    turns = list(conversation.turns)
    lines = [line for line in conversation.summary.splitlines() if line.strip()]
    while len(turns) > 2 and Conversation("\n".join(lines), turns).tokens() > budget:
        lines.append(_line(turns.pop(0)))
    while lines and Conversation("\n".join(lines), turns).tokens() > budget:
        lines.pop(0)
    return Conversation("\n".join(lines), turns)


class MemoryStore(Protocol):
    async def load(self, session_id: str) -> Conversation: ...
    async def save(self, session_id: str, conversation: Conversation) -> None: ...
    async def save_run(self, run: Run) -> None: ...
    async def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    async def close(self) -> None: ...


_meta = sa.MetaData()
sessions_table = sa.Table(
    "agent_sessions",
    _meta,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
runs_table = sa.Table(
    "agent_runs",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(128), nullable=False, index=True),
    sa.Column("session_id", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)


class SqlMemory:
    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        _meta.create_all(self.engine)

    async def load(self, session_id: str) -> Conversation:
        return await asyncio.to_thread(self._load, session_id)

    def _load(self, session_id: str) -> Conversation:
        with self.engine.connect() as conn:
            query = sa.select(sessions_table.c.data).where(sessions_table.c.session_id == session_id)
            return Conversation.from_json(conn.execute(query).scalar())

    async def save(self, session_id: str, conversation: Conversation) -> None:
        await asyncio.to_thread(self._upsert, sessions_table, "session_id", session_id, data=conversation.to_json())

    async def save_run(self, run: Run) -> None:
        values = {
            "agent": run.agent,
            "session_id": run.session_id,
            "status": run.status,
            "created": run.created,
            "data": run.model_dump_json(),
        }
        await asyncio.to_thread(self._upsert, runs_table, "run_id", run.id, **values)

    def _upsert(self, table: sa.Table, key: str, value: str, **values: Any) -> None:
        if table is sessions_table:
            values["updated"] = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(table.update().where(table.c[key] == value).values(**values)).rowcount
            if not done:
                conn.execute(table.insert().values({key: value, **values}))

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        def query() -> str | None:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(runs_table.c.data).where(runs_table.c.run_id == run_id)).scalar()

        data = await asyncio.to_thread(query)
        return json.loads(data) if data else None

    async def close(self) -> None:
        self.engine.dispose()


class RedisMemory:
    def __init__(self, client: Any, ttl_s: int, prefix: str = "lathe:agent:") -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> RedisMemory:
        import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url), ttl_s)

    async def load(self, session_id: str) -> Conversation:
        return Conversation.from_json(await self.client.get(f"{self.prefix}session:{session_id}"))

    async def save(self, session_id: str, conversation: Conversation) -> None:
        await self.client.set(f"{self.prefix}session:{session_id}", conversation.to_json(), ex=self.ttl_s)

    async def save_run(self, run: Run) -> None:
        await self.client.set(f"{self.prefix}run:{run.id}", run.model_dump_json(), ex=self.ttl_s)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        data = await self.client.get(f"{self.prefix}run:{run_id}")
        return json.loads(data) if data else None

    async def close(self) -> None:
        await self.client.aclose()


def open_memory(settings: AgentServiceSettings) -> MemoryStore:
    url = settings.memory
    if url.startswith(("redis://", "rediss://")):
        return RedisMemory.from_url(url, settings.memory_ttl_s)
    if url.startswith("sqlite:///"):
        settings.agent_dir.mkdir(parents=True, exist_ok=True)
    return SqlMemory(url)
