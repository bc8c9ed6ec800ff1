"""Teams, prices and money budgets: what a request costs and who may still pay for it.

- **Prices** are USD per 1k prompt and per 1k completion tokens, per model: the routes
  file's ``price:`` or ``LATHE_GATEWAY_PRICES`` (``{"model": {"prompt": 0.1, "completion": 0.3}}``).
- **Budgets** are USD per period (``day`` and ``month``: UTC calendar periods; ``total``: ever),
  on a key and on its team. A request reserves its worst cost (prompt + ``max_tokens`` at the
  model's price) against each of them with the token quotas, in the same atomic step
  (services/gateway/quotas.py), and the real cost replaces it when the answer is done.
- **Money is counted in integer micro-dollars** end to end (the database, the in-process
  ledger, Redis' INCRBY), so adding a million small costs drifts by nothing.

A key's team and its own budgets live beside the key (``key_spend``), a team's in ``teams``
(services/gateway/tables.py); each usage row keeps its cost and the key's team at the time.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from lathe.errors import InvalidRequestError, NotFoundError
from services.gateway.tables import Team, UsageRecord

if TYPE_CHECKING:
    from services.gateway.keys import KeyInfo, KeyStore

MICRO = 1_000_000
Period = Literal["day", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "month", "total")


class Price(BaseModel):
    """USD per 1k tokens."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(ge=0, le=1000)
    completion: float = Field(ge=0, le=1000)

    def cost_micro(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What the tokens cost, in micro-dollars, rounded up (a reservation never undercounts)."""
        return math.ceil((prompt_tokens * self.prompt + completion_tokens * self.completion) * MICRO / 1000 - 1e-9)


class SpendBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: float = Field(gt=0, le=1e9)
    period: Period = "month"

    def label(self) -> str:
        return f"${self.usd:g}/{self.period}"


def one_per_period(budgets: list[SpendBudget]) -> list[SpendBudget]:
    periods = [b.period for b in budgets]
    if len(set(periods)) != len(periods):
        raise ValueError("one budget per period (day, month, total)")
    return budgets


def period_start(period: Period, now: dt.datetime) -> dt.datetime | None:
    """Where the period that holds ``now`` (naive UTC) began; None for ``total``."""
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


@dataclass(frozen=True)
class MoneyLimit:
    """One budget a request draws on: its counter names the owner and the period it is in."""

    scope: Literal["key", "team"]
    owner: str  # a key's id, a team's name
    period: Period
    limit: int  # micro-dollars
    since: dt.datetime | None
    name: str  # for people: "team research's $50/month budget"

    @property
    def counter(self) -> str:
        bucket = "all" if self.since is None else self.since.strftime("%Y-%m-%d")
        return f"{self.scope}:{self.owner}:{self.period}:{bucket}"


def money_limits(key: KeyInfo, now: dt.datetime) -> tuple[MoneyLimit, ...]:
    """Every budget a key's request draws on: the key's own, then its team's."""
    owners = [("key", key.id, f"key {key.name}", key.spend_budgets)]
    if key.team is not None:
        owners.append(("team", key.team, f"team {key.team}", key.team_budgets))
    limits = []
    for scope, owner, who, budgets in owners:
        for raw in budgets:
            budget = SpendBudget.model_validate(raw)
            since = period_start(budget.period, now)
            limit = round(budget.usd * MICRO)
            limits.append(MoneyLimit(scope, owner, budget.period, limit, since, f"{who}'s {budget.label()} budget"))
    return tuple(limits)


def team_dict(team: Team) -> dict:
    return {"name": team.name, "budgets": list(team.budgets or []), "created_at": team.created_at.isoformat()}


def create_team(store: KeyStore, name: str, budgets: list[dict]) -> dict:
    with store.sessions() as session, session.begin():
        if session.get(Team, name) is not None:
            raise InvalidRequestError(f"a team named {name!r} already exists", param="name")
        team = Team(name=name, budgets=budgets)
        session.add(team)
    return team_dict(team)


def get_team(store: KeyStore, name: str) -> dict:
    with store.sessions() as session:
        team = session.get(Team, name)
        if team is None:
            raise NotFoundError(f"no team named {name!r}; create it with `lathe teams create {name}`", param="team")
        return team_dict(team)


def list_teams(store: KeyStore) -> list[dict]:
    with store.sessions() as session:
        return [team_dict(t) for t in session.scalars(select(Team).order_by(Team.name))]


def spent_micro(store: KeyStore, limit: MoneyLimit) -> int:
    """What the owner of ``limit`` has spent in its period, from the usage rows."""
    column = UsageRecord.key_id if limit.scope == "key" else UsageRecord.team
    query = select(func.coalesce(func.sum(UsageRecord.cost_micro), 0)).where(column == limit.owner)
    if limit.since is not None:
        query = query.where(UsageRecord.created_at >= limit.since)
    with store.sessions() as session:
        return int(session.scalar(query) or 0)


def spend_report(store: KeyStore, scope: str, owner: str, budgets: list[dict], now: dt.datetime) -> dict:
    """Spend by model and by period, and each budget's use: ``lathe keys usage`` / ``lathe teams usage``."""
    column = UsageRecord.key_id if scope == "key" else UsageRecord.team
    with store.sessions() as session:
        rows = session.execute(
            select(
                UsageRecord.model,
                func.count(),
                func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
                func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
                func.coalesce(func.sum(UsageRecord.cost_micro), 0),
            )
            .where(column == owner)
            .group_by(UsageRecord.model)
        ).all()
    by_model = [
        {"model": m, "requests": int(n), "prompt_tokens": int(p), "completion_tokens": int(c), "spend_usd": s / MICRO}
        for m, n, p, c, s in rows
    ]
    periods = {}
    for period in PERIODS:
        probe = MoneyLimit(scope, owner, period, 0, period_start(period, now), "")  # type: ignore[arg-type]
        periods[period] = spent_micro(store, probe) / MICRO
    spend_budgets = [
        {**b, "spent_usd": periods[b["period"]], "left_usd": max(b["usd"] - periods[b["period"]], 0.0)}
        for b in (SpendBudget.model_validate(raw).model_dump() for raw in budgets)
    ]
    return {"by_model": by_model, "spend_usd": periods, "spend_budgets": spend_budgets}


def budget_figures(store: KeyStore, now: dt.datetime) -> list[tuple[str, str, str, float, float]]:
    """(scope, owner, period, spent USD, budget USD) for every budget of a team and of an
    active key (named by its name): the spend gauges the budget alerts read."""
    from services.gateway.tables import ApiKey, KeySpend

    with store.sessions() as session:
        owners = [("team", t.name, t.name, t.budgets) for t in session.scalars(select(Team)) if t.budgets]
        keys = session.execute(
            select(ApiKey.id, ApiKey.name, KeySpend.budgets)
            .join(KeySpend, KeySpend.key_id == ApiKey.id)
            .where(ApiKey.revoked_at.is_(None))
        ).all()
    owners += [("key", key_id, name, budgets) for key_id, name, budgets in keys if budgets]
    figures = []
    for scope, owner, label, budgets in owners:
        for raw in budgets:
            budget = SpendBudget.model_validate(raw)
            probe = MoneyLimit(scope, owner, budget.period, 0, period_start(budget.period, now), "")  # type: ignore[arg-type]
            figures.append((scope, label, budget.period, spent_micro(store, probe) / MICRO, budget.usd))
    return figures
