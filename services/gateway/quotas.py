"""Exact quotas under concurrency: reserve before forwarding, reconcile after.

A request reserves its worst case (prompt estimate + ``max_tokens``) against the
key's sliding one-minute window (RPM, TPM) and its lifetime budget, atomically; if
it does not fit it is refused with 429 and ``Retry-After``. When the response is
done the reservation is replaced by the real usage. So N concurrent requests can
never spend more than the limit, whatever their interleaving (the check and the
write are one step: a lock in process, one Lua script on Redis).

``InProcessLimiter`` serves one gateway; ``RedisLimiter`` lets replicas share limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from lathe.errors import LatheError

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


@dataclass
class Reservation:
    key_id: str
    member: str
    tokens: int
    at: float
    settled: bool = field(default=False)


SpentLoader = Callable[[str], Awaitable[int]]


class QuotaLimiter(Protocol):
    async def reserve(self, key_id: str, tokens: int, limits: Limits) -> Reservation | None: ...

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int) -> None: ...


def _refuse_oversized(tokens: int, limits: Limits) -> None:
    if limits.tpm is not None and tokens > limits.tpm:
        raise RateLimitedError(
            f"this request reserves {tokens} tokens (prompt + max_tokens), more than the key's "
            f"limit of {limits.tpm} tokens per minute; lower max_tokens",
            retry_after_s=None,
        )


class InProcessLimiter:
    def __init__(self, spent: SpentLoader, clock: Callable[[], float] = time.time) -> None:
        self._spent = spent
        self._clock = clock
        self._windows: dict[str, list[Reservation]] = defaultdict(list)
        self._budget_used: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def reserve(self, key_id: str, tokens: int, limits: Limits) -> Reservation:
        _refuse_oversized(tokens, limits)
        if limits.budget is not None and key_id not in self._budget_used:
            spent = await self._spent(key_id)
            self._budget_used.setdefault(key_id, spent)
        async with self._lock:
            now = self._clock()
            window = self._windows[key_id]
            window[:] = [r for r in window if r.at > now - WINDOW_S]
            if limits.rpm is not None and len(window) + 1 > limits.rpm:
                raise RateLimitedError(
                    f"rate limit of {limits.rpm} requests per minute reached", window[0].at + WINDOW_S - now
                )
            if limits.tpm is not None:
                used = sum(r.tokens for r in window)
                if used + tokens > limits.tpm:
                    retry = _tpm_retry_after([(r.at, r.tokens) for r in window], used, tokens, limits.tpm, now)
                    raise RateLimitedError(
                        f"rate limit of {limits.tpm} tokens per minute reached ({used} in use, {tokens} asked)", retry
                    )
            if limits.budget is not None:
                if self._budget_used[key_id] + tokens > limits.budget:
                    raise BudgetExceededError(
                        f"the key's token budget of {limits.budget} would be exceeded "
                        f"({self._budget_used[key_id]} spent, {tokens} asked)"
                    )
                self._budget_used[key_id] += tokens
            reservation = Reservation(key_id, uuid.uuid4().hex, tokens, now)
            window.append(reservation)
            return reservation

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int) -> None:
        if reservation is None or reservation.settled:
            return
        async with self._lock:
            reservation.settled = True
            if reservation.key_id in self._budget_used:
                self._budget_used[reservation.key_id] += actual_tokens - reservation.tokens
            reservation.tokens = actual_tokens


def _tpm_retry_after(entries: list[tuple[float, int]], used: int, tokens: int, tpm: int, now: float) -> float:
    """Seconds until enough of the window expires for ``tokens`` to fit."""
    freed = 0
    for at, amount in sorted(entries):
        freed += amount
        if used - freed + tokens <= tpm:
            return max(at + WINDOW_S - now, 0.0)
    return WINDOW_S


_RESERVE_LUA = """
local window_key, budget_key = KEYS[1], KEYS[2]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member, budget, spent = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', window_key, '-inf', now - window)
local entries = redis.call('ZRANGE', window_key, 0, -1, 'WITHSCORES')
local count = #entries / 2
if rpm >= 0 and count + 1 > rpm then
  return {-1, tostring(tonumber(entries[2]) + window - now)}
end
if tpm >= 0 then
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  if used + tokens > tpm then
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
      if used - freed + tokens <= tpm then
        return {-1, tostring(tonumber(entries[i + 1]) + window - now)}
      end
    end
    return {-1, tostring(window)}
  end
end
if budget >= 0 then
  local current = redis.call('GET', budget_key)
  if not current then redis.call('SET', budget_key, spent); current = spent end
  if tonumber(current) + tokens > budget then return {-2, tostring(current)} end
  redis.call('INCRBY', budget_key, tokens)
end
redis.call('ZADD', window_key, now, member .. ':' .. tokens)
redis.call('PEXPIRE', window_key, math.ceil(window * 2000))
return {1, '0'}
"""

_RECONCILE_LUA = """
local window_key, budget_key = KEYS[1], KEYS[2]
local old, new, delta = ARGV[1], ARGV[2], tonumber(ARGV[3])
local score = redis.call('ZSCORE', window_key, old)
if score then
  redis.call('ZREM', window_key, old)
  redis.call('ZADD', window_key, score, new)
end
if redis.call('EXISTS', budget_key) == 1 then redis.call('INCRBY', budget_key, delta) end
return 1
"""


class RedisLimiter:
    """The same contract on Redis, so every gateway replica draws on one quota."""

    def __init__(self, url: str, spent: SpentLoader, failure_mode: str = "closed", prefix: str = "lathe") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._spent = spent
        self._failure_mode = failure_mode
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._reconcile = self._redis.register_script(_RECONCILE_LUA)

    def _keys(self, key_id: str) -> list[str]:
        return [f"{self._prefix}:quota:{key_id}:window", f"{self._prefix}:quota:{key_id}:budget"]

    async def reserve(self, key_id: str, tokens: int, limits: Limits) -> Reservation | None:
        import redis

        _refuse_oversized(tokens, limits)
        member = uuid.uuid4().hex
        now = time.time()
        try:
            spent = await self._spent(key_id) if limits.budget is not None else 0
            status, value = await self._reserve(
                keys=self._keys(key_id),
                args=[
                    now, WINDOW_S,
                    -1 if limits.rpm is None else limits.rpm,
                    -1 if limits.tpm is None else limits.tpm,
                    tokens, member,
                    -1 if limits.budget is None else limits.budget,
                    spent,
                ],
            )  # fmt: skip
        except (redis.RedisError, OSError) as exc:
            if self._failure_mode == "open":
                return None
            raise QuotaBackendError(
                f"quota store (Redis) unavailable: {type(exc).__name__}; requests are refused "
                "(LATHE_GATEWAY_REDIS_FAILURE_MODE=closed)"
            ) from None
        if int(status) == -1:
            retry = float(value)
            raise RateLimitedError("rate limit reached for this key", max(retry, 0.0))
        if int(status) == -2:
            raise BudgetExceededError(f"the key's token budget of {limits.budget} would be exceeded")
        return Reservation(key_id, f"{member}:{tokens}", tokens, now)

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int) -> None:
        import redis

        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        new_member = f"{reservation.member.rsplit(':', 1)[0]}:{actual_tokens}"
        # On failure the reservation stays as reserved: it can only over-count, never under.
        with contextlib.suppress(redis.RedisError, OSError):
            await self._reconcile(
                keys=self._keys(reservation.key_id),
                args=[reservation.member, new_member, actual_tokens - reservation.tokens],
            )

    async def close(self) -> None:
        await self._redis.aclose()


def retry_after_header(exc: RateLimitedError) -> dict[str, str]:
    if exc.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
