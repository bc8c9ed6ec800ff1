"""Exact quotas under concurrency: reserve before forwarding, reconcile after.

A request reserves its worst case (prompt estimate + ``max_tokens``) against the
key's sliding one-minute window (RPM, TPM) and its lifetime budget, and its worst cost
against every money budget it draws on (the key's and its team's, per period:
services/gateway/spend.py), atomically; if it does not fit it is refused with 429 (and
``Retry-After`` for a rate). When the response is
done the reservation is replaced by the real usage. So N concurrent requests can
never spend more than the limit, whatever their interleaving (the check and the
write are one step: a lock in process, one Lua script on Redis).

``InProcessLimiter`` serves one gateway; ``RedisLimiter`` (services/gateway/redis_quotas.py)
lets replicas share limits.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from lathe.errors import LatheError
from services.gateway.spend import MICRO, MoneyLimit

WINDOW_S = 60.0


class RateLimitedError(LatheError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BudgetExceededError(LatheError):
    status_code = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"


class QuotaBackendError(LatheError):
    status_code = 503
    error_type = "service_unavailable"
    code = "quota_backend_unavailable"


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    budget: int | None = None
    money: tuple[MoneyLimit, ...] = ()  # the money budgets it draws on


@dataclass
class Reservation:
    key_id: str
    member: str
    tokens: int
    at: float
    settled: bool = field(default=False)
    cost: int = 0  # micro-dollars, reserved on each of ``counters``
    counters: tuple[str, ...] = ()


SpentLoader = Callable[[str], Awaitable[int]]
MoneyLoader = Callable[[MoneyLimit], Awaitable[int]]


async def no_money_spent(_: MoneyLimit) -> int:
    return 0


class QuotaLimiter(Protocol):
    async def reserve(self, key_id: str, tokens: int, limits: Limits, cost: int = 0) -> Reservation | None: ...

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int, actual_cost: int = 0) -> None: ...


def over_budget(money: MoneyLimit, current: int, cost: int) -> BudgetExceededError:
    return BudgetExceededError(
        f"{money.name} would be exceeded (${current / MICRO:.6f} spent, ${cost / MICRO:.6f} reserved for this "
        "request at most: prompt + max_tokens at the model's price)"
    )


def refuse_oversized(tokens: int, limits: Limits) -> None:
    if limits.tpm is not None and tokens > limits.tpm:
        raise RateLimitedError(
            f"this request reserves {tokens} tokens (prompt + max_tokens), more than the key's "
            f"limit of {limits.tpm} tokens per minute; lower max_tokens",
            retry_after_s=None,
        )


class InProcessLimiter:
    def __init__(
        self, spent: SpentLoader, clock: Callable[[], float] = time.time, money_spent: MoneyLoader = no_money_spent
    ) -> None:
        self._spent = spent
        self._money_spent = money_spent
        self._clock = clock
        self._windows: dict[str, list[Reservation]] = defaultdict(list)
        self._budget_used: dict[str, int] = {}
        self._money_used: dict[str, int] = {}  # micro-dollars per counter (owner, period, which one)
        self._lock = asyncio.Lock()

    async def _load_money(self, limits: Limits) -> None:
        """Each budget's spend so far, from the database, the first time its period is seen."""
        for money in limits.money:
            if money.counter not in self._money_used:
                spent = await self._money_spent(money)
                stem = money.counter.rsplit(":", 1)[0] + ":"
                for old in [c for c in self._money_used if c.startswith(stem)]:
                    del self._money_used[old]  # an earlier day or month of the same budget
                self._money_used.setdefault(money.counter, spent)

    async def reserve(self, key_id: str, tokens: int, limits: Limits, cost: int = 0) -> Reservation:
        refuse_oversized(tokens, limits)
        if limits.budget is not None and key_id not in self._budget_used:
            spent = await self._spent(key_id)
            self._budget_used.setdefault(key_id, spent)
        await self._load_money(limits)
        async with self._lock:
            now = self._clock()
            window = self._windows[key_id]
            window[:] = [r for r in window if r.at > now - WINDOW_S]
            self._check_rates(window, tokens, limits, now)
            self._check_budgets(key_id, tokens, limits, cost)
            if limits.budget is not None:
                self._budget_used[key_id] += tokens
            counters = tuple(money.counter for money in limits.money)
            for counter in counters:
                self._money_used[counter] = self._money_used.get(counter, 0) + cost
            reservation = Reservation(key_id, uuid.uuid4().hex, tokens, now, cost=cost, counters=counters)
            window.append(reservation)
            return reservation

    @staticmethod
    def _check_rates(window: list[Reservation], tokens: int, limits: Limits, now: float) -> None:
        if limits.rpm is not None and len(window) + 1 > limits.rpm:
            retry = window[0].at + WINDOW_S - now
            raise RateLimitedError(f"rate limit of {limits.rpm} requests per minute reached", retry)
        if limits.tpm is not None:
            used = sum(r.tokens for r in window)
            if used + tokens > limits.tpm:
                retry = _tpm_retry_after([(r.at, r.tokens) for r in window], used, tokens, limits.tpm, now)
                raise RateLimitedError(
                    f"rate limit of {limits.tpm} tokens per minute reached ({used} in use, {tokens} asked)", retry
                )

    def _check_budgets(self, key_id: str, tokens: int, limits: Limits, cost: int) -> None:
        if limits.budget is not None and self._budget_used[key_id] + tokens > limits.budget:
            raise BudgetExceededError(
                f"the key's token budget of {limits.budget} would be exceeded "
                f"({self._budget_used[key_id]} spent, {tokens} asked)"
            )
        for money in limits.money:
            current = self._money_used.get(money.counter, 0)
            if current + cost > money.limit:
                raise over_budget(money, current, cost)

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int, actual_cost: int = 0) -> None:
        if reservation is None or reservation.settled:
            return
        async with self._lock:
            reservation.settled = True
            if reservation.key_id in self._budget_used:
                self._budget_used[reservation.key_id] += actual_tokens - reservation.tokens
            for counter in reservation.counters:
                if counter in self._money_used:
                    self._money_used[counter] += actual_cost - reservation.cost
            reservation.tokens, reservation.cost = actual_tokens, actual_cost


def _tpm_retry_after(entries: list[tuple[float, int]], used: int, tokens: int, tpm: int, now: float) -> float:
    """Seconds until enough of the window expires for ``tokens`` to fit."""
    freed = 0
    for at, amount in sorted(entries):
        freed += amount
        if used - freed + tokens <= tpm:
            return max(at + WINDOW_S - now, 0.0)
    return WINDOW_S


def retry_after_header(exc: RateLimitedError) -> dict[str, str]:
    if exc.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
