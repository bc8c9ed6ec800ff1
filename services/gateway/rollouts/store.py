"""Rollouts, their windows, the request ledger and the leader lease, in the gateway's database.

The same SQLAlchemy engine as the keys (SQLite locally, PostgreSQL in the cluster),
so every replica reads the same rollouts and a restart resumes where it was. Each
replica writes its own running totals per (rollout, step, version); the leader adds
them up. The lease is a row that a replica takes when it is free or expired and keeps
by renewing it: one conditional UPDATE, correct on both databases.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from lathe.errors import NotFoundError
from services.gateway.rollouts.analysis import Window
from services.gateway.rollouts.spec import ACTIVE_STATES, RolloutSpec
from services.gateway.tables import Base


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex[:12])
    model: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[str] = mapped_column(String(16))
    champion: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict] = mapped_column(JSON)
    history: Mapped[list] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class RolloutWindowRow(Base):
    __tablename__ = "rollout_windows"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(16), primary_key=True)
    replica: Mapped[str] = mapped_column(String(32), primary_key=True)
    data: Mapped[dict] = mapped_column(JSON)


class RequestRow(Base):
    __tablename__ = "gateway_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, index=True)


class LeaseRow(Base):
    __tablename__ = "gateway_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)


@dataclass
class Rollout:
    id: str
    model: str
    version: str
    champion: str | None
    state: str
    step: int
    step_started_at: float
    spec: RolloutSpec
    history: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def of(cls, row: RolloutRow) -> Rollout:
        return cls(
            row.id, row.model, row.version, row.champion, row.state, row.step, row.step_started_at,
            RolloutSpec.model_validate(row.spec), list(row.history or []), row.reason, row.created_at, row.updated_at,
        )  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        """Everything the row holds, as JSON: what the Redis copy keeps."""
        return {**self.__dict__, "spec": self.spec.model_dump()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Rollout:
        return cls(**{**record, "spec": RolloutSpec.model_validate(record["spec"])})

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def weight(self) -> float:
        """The candidate's share now: the step's while running, all of it once promoted, none otherwise."""
        if self.state == "running":
            return self.spec.steps[self.step].weight
        return 100.0 if self.state == "promoted" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "champion": self.champion,
            "alias": self.spec.alias,
            "state": self.state,
            "step": self.step + 1 if self.state == "running" else None,
            "steps": [s.model_dump() for s in self.spec.steps],
            "weight": self.weight(),
            "thresholds": self.spec.thresholds.model_dump(),
            "judge": self.spec.judge.model_dump() if self.spec.judge else None,
            "reason": self.reason,
            "history": self.history,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class RolloutStore:
    def __init__(self, engine) -> None:
        Base.metadata.create_all(engine)
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    # -- rollouts -------------------------------------------------------------------
    def create(self, spec: RolloutSpec, champion: str | None, history: list[dict]) -> Rollout:
        now = time.time()
        row = RolloutRow(
            model=spec.model, version=spec.version, champion=champion, state="waiting", step=0, step_started_at=now,
            spec=spec.model_dump(), history=history, reason=spec.reason, created_at=now, updated_at=now,
        )  # fmt: skip
        with self.sessions.begin() as session:
            session.add(row)
        return Rollout.of(row)

    def get(self, rollout_id: str) -> Rollout:
        with self.sessions() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is None:
                raise NotFoundError(f"no rollout {rollout_id!r}", param="id")
            return Rollout.of(row)

    def list(self, model: str | None = None, limit: int = 50) -> list[Rollout]:
        query = select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)
        if model is not None:
            query = query.where(RolloutRow.model == model)
        with self.sessions() as session:
            return [Rollout.of(row) for row in session.scalars(query)]

    def current(self) -> dict[str, Rollout]:
        """Per model, its newest rollout: the one whose weights apply."""
        newest: dict[str, Rollout] = {}
        for rollout in reversed(self.list(limit=500)):
            newest[rollout.model] = rollout
        return newest

    def transition(self, rollout: Rollout, expect_state: str, expect_step: int, **changes: Any) -> bool:
        """Apply ``changes`` only if nobody moved the rollout meanwhile (compare and set)."""
        changes["updated_at"] = time.time()
        with self.sessions.begin() as session:
            result = session.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout.id, RolloutRow.state == expect_state, RolloutRow.step == expect_step)
                .values(**changes)
            )
            return result.rowcount == 1

    # -- windows --------------------------------------------------------------------
    def save_windows(self, replica: str, windows: dict[tuple[str, int, str], Window]) -> None:
        if not windows:
            return
        with self.sessions.begin() as session:
            for (rollout_id, step, version), window in windows.items():
                key = (rollout_id, step, version, replica)
                row = session.get(RolloutWindowRow, key)
                if row is None:
                    session.add(RolloutWindowRow(
                        rollout_id=rollout_id, step=step, version=version, replica=replica, data=window.to_json()
                    ))  # fmt: skip
                else:
                    row.data = window.to_json()

    def windows(self, rollout_id: str, step: int) -> dict[str, Window]:
        """Per version, the sum over every replica of the step's window."""
        query = select(RolloutWindowRow).where(RolloutWindowRow.rollout_id == rollout_id, RolloutWindowRow.step == step)
        total: dict[str, Window] = {}
        with self.sessions() as session:
            for row in session.scalars(query):
                total.setdefault(row.version, Window()).add(Window.from_json(row.data))
        return total

    # -- request ledger (what feedback may name) ------------------------------------
    def record_requests(self, records: list[tuple[str, str, str]], keep_s: float) -> None:
        if not records:
            return
        now = time.time()
        with self.sessions.begin() as session:
            ids = [r[0] for r in records]
            session.execute(delete(RequestRow).where(RequestRow.request_id.in_(ids)))
            session.execute(
                insert(RequestRow),
                [{"request_id": i, "model": m, "version": v, "created_at": now} for i, m, v in records],
            )
            session.execute(delete(RequestRow).where(RequestRow.created_at < now - keep_s))

    def find_request(self, request_id: str) -> tuple[str, str] | None:
        with self.sessions() as session:
            row = session.get(RequestRow, request_id)
            return (row.model, row.version) if row is not None else None

    # -- leader lease ---------------------------------------------------------------
    def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease; True while ``holder`` has it."""
        now = time.time()
        with self.sessions.begin() as session:
            taken = session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, (LeaseRow.holder == holder) | (LeaseRow.expires_at < now))
                .values(holder=holder, expires_at=now + ttl_s)
            ).rowcount
        if taken:
            return True
        try:
            with self.sessions.begin() as session:
                session.add(LeaseRow(name=name, holder=holder, expires_at=now + ttl_s))
            return True
        except IntegrityError:
            return False

    def release_lease(self, name: str, holder: str) -> None:
        with self.sessions.begin() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))
