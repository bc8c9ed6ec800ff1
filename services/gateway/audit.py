"""The audit log: one append-only row per request that passed authentication.

Who sent it (the key and its name), the model and the version that answered, the route,
tokens, the status, each guardrail's decision (``{"pii": "mask", "injection": "pass"}``,
never the text), the latency and the request id that ties the row to the logs. Requests
refused after authentication (over a quota, stopped by a guardrail, no backend) are rows
too. ``team`` is the key's team, ``spend`` what the request cost in USD at its model's price
(empty for a model with no price); ``cache_hit`` whether a response cache answered it (empty
for a key with no cache).

Rows are written in the usage recorder's batches (``services.gateway.keys``), read with
``lathe audit --since 1h --key NAME --json`` (``GET /admin/audit``), and deleted after
``LATHE_GATEWAY_AUDIT_RETENTION_DAYS``; nothing updates a row.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from services.gateway.keys import KeyStore
from services.gateway.tables import Base, utcnow


class AuditRecord(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    key_name: Mapped[str] = mapped_column(String(128))
    team: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    spend: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    guardrails: Mapped[dict] = mapped_column(JSON, default=dict)
    cache_hit: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


@dataclass
class AuditEntry:
    """One request's row, filled in as the request goes."""

    key_id: str
    key_name: str
    model: str
    route: str
    request_id: str | None = None
    team: str | None = None
    version: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    guardrails: dict[str, str] = field(default_factory=dict)
    spend: float | None = None
    cache_hit: bool | None = None
    latency_ms: float | None = None
    started: float = field(default_factory=time.monotonic)  # not a column

    def row(self) -> AuditRecord:
        return AuditRecord(**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "started"})


RANK = {"pass": 0, "mask": 1, "block": 2}


def note_decision(decisions: dict[str, str], guardrail: str, action: str) -> None:
    """Keep a guardrail's strongest decision on the request and its answer."""
    if RANK[action] >= RANK.get(decisions.get(guardrail, "pass"), 0):
        decisions[guardrail] = action


def to_dict(row: AuditRecord) -> dict:
    return {
        "time": row.created_at.isoformat(),
        "request_id": row.request_id,
        "key": row.key_name,
        "key_id": row.key_id,
        "team": row.team,
        "model": row.model,
        "version": row.version,
        "route": row.route,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "spend": row.spend,
        "status": row.status,
        "guardrails": row.guardrails or {},
        "cache_hit": row.cache_hit,
        "latency_ms": row.latency_ms,
    }


def query(store: KeyStore, since: dt.datetime, key: str | None = None, limit: int = 1000) -> list[dict]:
    """Rows since ``since`` (UTC, naive), newest last; ``key``: a key's name or id."""
    statement = select(AuditRecord).where(AuditRecord.created_at >= since)
    if key is not None:
        statement = statement.where((AuditRecord.key_name == key) | (AuditRecord.key_id == key))
    statement = statement.order_by(AuditRecord.created_at.desc(), AuditRecord.id.desc()).limit(limit)
    with store.sessions() as session:
        return [to_dict(row) for row in reversed(session.scalars(statement).all())]


def prune(store: KeyStore, retention_days: int) -> int:
    """Delete rows older than the retention; how many went."""
    cutoff = utcnow() - dt.timedelta(days=retention_days)
    with store.sessions() as session, session.begin():
        return session.execute(delete(AuditRecord).where(AuditRecord.created_at < cutoff)).rowcount or 0
