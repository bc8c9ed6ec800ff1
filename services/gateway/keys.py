"""API keys and their usage, in a real database through one SQLAlchemy model.

A key is shown once, when it is created (``lk-`` + 40 random characters), and only
its SHA-256 hash is stored: the key has 238 bits of entropy, so a slow password hash
would buy nothing. Usage is appended per request (services/gateway/recorder.py) and summed
for ``lathe keys usage``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from lathe.errors import InvalidRequestError, NotFoundError
from services.gateway.spend import spend_report
from services.gateway.tables import (
    ApiKey,
    Base,
    KeyCaches,
    KeyGuardrails,
    KeySpend,
    Team,
    UsageRecord,
    add_missing_columns,
    utcnow,
)

KEY_PREFIX = "lk-"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """A key as the gateway needs it on every request (no secret)."""

    id: str
    name: str
    key_prefix: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    budget: int | None
    max_tokens: int | None
    tools: tuple[str, ...]
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime
    guardrails: tuple[dict, ...] = ()  # GuardrailConfig dicts
    team: str | None = None
    spend_budgets: tuple[dict, ...] = ()  # SpendBudget dicts (services.gateway.spend)
    team_budgets: tuple[dict, ...] = ()
    cache: tuple[str, ...] = ()  # the response caches it opted into: exact, semantic

    @classmethod
    def of(cls, row: ApiKey) -> KeyInfo:
        return cls(
            id=row.id,
            name=row.name,
            key_prefix=row.key_prefix,
            models=tuple(row.models or ()),
            rpm=row.rpm,
            tpm=row.tpm,
            budget=row.budget,
            max_tokens=row.max_tokens,
            tools=tuple(row.tools or ()),
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            created_at=row.created_at,
            guardrails=tuple(row.guarded.guardrails) if row.guarded else (),
            team=row.spend.team_name if row.spend else None,
            spend_budgets=tuple(row.spend.budgets) if row.spend else (),
            team_budgets=tuple(row.spend.team.budgets) if row.spend and row.spend.team else (),
            cache=tuple(row.caches.kinds) if row.caches else (),
        )

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utcnow())

    def allows_model(self, model: str) -> bool:
        return not self.models or model in self.models

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "key_prefix": self.key_prefix,
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget": self.budget,
            "max_tokens": self.max_tokens,
            "tools": list(self.tools),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_at": self.created_at.isoformat(),
            "active": self.active,
            "guardrails": list(self.guardrails),
            "team": self.team,
            "spend_budgets": list(self.spend_budgets),
            "cache": list(self.cache),
        }

    @property
    def pays(self) -> bool:
        """Whether a money budget (the key's or its team's) limits it: its models need prices."""
        return bool(self.spend_budgets or self.team_budgets)


class KeyStore:
    def __init__(self, database_url: str) -> None:
        connect_args = {"check_same_thread": False} if database_url.startswith("sqlite") else {}
        self.engine = create_engine(database_url, connect_args=connect_args, pool_pre_ping=True)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: int | None = None,
        max_tokens: int | None = None,
        tools: list[str] | None = None,
        expires_at: dt.datetime | None = None,
        guardrails: list[dict] | None = None,
        team: str | None = None,
        spend_budgets: list[dict] | None = None,
        cache: list[str] | None = None,
    ) -> tuple[str, KeyInfo]:
        """Create a key; the raw key is returned here and never again."""
        for field, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget), ("max_tokens", max_tokens)):
            if value is not None and value < 1:
                raise InvalidRequestError(f"{field} must be at least 1", param=field)
        if not name or len(name) > 128:
            raise InvalidRequestError("name must be 1 to 128 characters", param="name")
        raw = KEY_PREFIX + secrets.token_urlsafe(30)
        row = ApiKey(
            name=name,
            key_hash=hash_key(raw),
            key_prefix=raw[:8],
            models=models or [],
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            max_tokens=max_tokens,
            tools=tools or [],
            expires_at=expires_at,
            guarded=KeyGuardrails(guardrails=guardrails) if guardrails else None,
            spend=KeySpend(team_name=team, budgets=spend_budgets or []) if team or spend_budgets else None,
            caches=KeyCaches(kinds=cache) if cache else None,
        )
        with self.sessions() as session, session.begin():
            if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
                raise InvalidRequestError(f"a key named {name!r} already exists", param="name")
            if team is not None and session.get(Team, team) is None:
                raise NotFoundError(f"no team named {team!r}; create it with `lathe teams create {team}`", param="team")
            session.add(row)
            session.flush()
            session.refresh(row)  # its team, joined
            return raw, KeyInfo.of(row)

    def verify(self, raw: str) -> KeyInfo | None:
        with self.sessions() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw)))
            return KeyInfo.of(row) if row else None

    def get(self, name_or_id: str) -> KeyInfo:
        with self.sessions() as session:
            row = session.scalar(select(ApiKey).where((ApiKey.name == name_or_id) | (ApiKey.id == name_or_id)))
            if row is None:
                raise NotFoundError(f"no key named {name_or_id!r}", param="key")
            return KeyInfo.of(row)

    def list(self) -> list[KeyInfo]:
        with self.sessions() as session:
            return [KeyInfo.of(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, name_or_id: str) -> KeyInfo:
        with self.sessions() as session, session.begin():
            row = session.scalar(select(ApiKey).where((ApiKey.name == name_or_id) | (ApiKey.id == name_or_id)))
            if row is None:
                raise NotFoundError(f"no key named {name_or_id!r}", param="key")
            row.revoked_at = row.revoked_at or utcnow()
            return KeyInfo.of(row)

    def record_usage(self, records: list[tuple], rows: list[Base] = ()) -> None:
        """Append usage rows, (key_id, model, prompt_tokens, completion_tokens, status, cost_micro,
        team), and other rows of the same requests (the audit log's) in the same transaction."""
        with self.sessions() as session, session.begin():
            session.add_all(
                UsageRecord(
                    key_id=k, model=m, prompt_tokens=p, completion_tokens=c, status=s, cost_micro=cost, team=team
                )
                for k, m, p, c, s, cost, team in records
            )
            session.add_all(rows)

    def tokens_used(self, key_id: str) -> int:
        with self.sessions() as session:
            total = session.scalar(
                select(func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0)).where(
                    UsageRecord.key_id == key_id
                )
            )
            return int(total or 0)

    def usage(self, name_or_id: str) -> dict:
        """Requests, tokens and spend by model; spend by period against the key's money budgets."""
        key = self.get(name_or_id)
        report = spend_report(self, "key", key.id, list(key.spend_budgets), utcnow())
        total = sum(r["prompt_tokens"] + r["completion_tokens"] for r in report["by_model"])
        return {
            "key": key.name,
            "team": key.team,
            "requests": sum(r["requests"] for r in report["by_model"]),
            "total_tokens": total,
            "budget": key.budget,
            "budget_left": None if key.budget is None else max(key.budget - total, 0),
            **report,
        }


class KeyCache:
    """Verified keys for a few seconds, so a request costs no database round trip.
    Revocation through this gateway clears it at once; other replicas follow within
    the TTL."""

    def __init__(self, store: KeyStore, ttl_s: float = 5.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, KeyInfo | None]] = {}

    async def verify(self, raw: str) -> KeyInfo | None:
        digest = hash_key(raw)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        info = await asyncio.to_thread(self.store.verify, raw)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (now, info)
        return info

    def clear(self) -> None:
        self._entries.clear()
