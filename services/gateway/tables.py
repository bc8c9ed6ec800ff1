"""The gateway's database schema: keys, their guardrails and spend settings, teams, usage.

One SQLAlchemy model for SQLite (locally) and PostgreSQL (the cluster). Settings added
after a table existed live in tables of their own beside it (``key_guardrails``,
``key_spend``), so an older database gains them by ``create_all``. Columns added to the
append-only ``usage`` table are added in place by ``add_missing_columns``: an older
database's rows read as costing nothing and belonging to no team.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    # The first characters, so an operator can tell keys apart without the secret.
    key_prefix: Mapped[str] = mapped_column(String(16))
    models: Mapped[list] = mapped_column(JSON, default=list)  # empty: every model
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget: Mapped[int | None] = mapped_column(Integer, nullable=True)  # tokens, lifetime
    max_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tools: Mapped[list] = mapped_column(JSON, default=list)  # agent tools allowed; empty: all
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    guarded: Mapped[KeyGuardrails | None] = relationship(lazy="joined", uselist=False)
    spend: Mapped[KeySpend | None] = relationship(lazy="joined", uselist=False)
    caches: Mapped[KeyCaches | None] = relationship(lazy="joined", uselist=False)


class KeyGuardrails(Base):
    """A key's guardrails (services.gateway.guardrails)."""

    __tablename__ = "key_guardrails"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    guardrails: Mapped[list] = mapped_column(JSON, default=list)


class KeyCaches(Base):
    """The response caches a key opted into (services.gateway.cache): ["exact", "semantic"]."""

    __tablename__ = "key_caches"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    kinds: Mapped[list] = mapped_column(JSON, default=list)


class Team(Base):
    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    budgets: Mapped[list] = mapped_column(JSON, default=list)  # SpendBudget dicts (services.gateway.spend)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KeySpend(Base):
    """A key's team and its own money budgets (services.gateway.spend)."""

    __tablename__ = "key_spend"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    team_name: Mapped[str | None] = mapped_column(ForeignKey("teams.name"), nullable=True)
    budgets: Mapped[list] = mapped_column(JSON, default=list)
    team: Mapped[Team | None] = relationship(lazy="joined")


class UsageRecord(Base):
    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    model: Mapped[str] = mapped_column(String(256))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer, default=200)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # What it cost at the model's price then, in micro-dollars; the key's team then.
    cost_micro: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    team: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)


_ADDED = {"usage": {"cost_micro": "BIGINT NOT NULL DEFAULT 0", "team": "VARCHAR(128)"}}


def add_missing_columns(engine: Engine) -> None:
    """Columns the schema gained since a table was created, added in place (idempotent)."""
    inspector = inspect(engine)
    for table, columns in _ADDED.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        with engine.begin() as connection:
            for name, ddl in columns.items():
                if name not in have:
                    connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
