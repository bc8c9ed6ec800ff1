"""The quota contract of services/gateway/quotas.py on Redis, so every gateway replica draws
on one set of windows and budgets: each reservation and each reconcile is one Lua script,
atomic on the server."""

from __future__ import annotations

import contextlib
import time
import uuid

from services.gateway.quotas import (
    WINDOW_S,
    BudgetExceededError,
    Limits,
    MoneyLoader,
    QuotaBackendError,
    RateLimitedError,
    Reservation,
    SpentLoader,
    no_money_spent,
    over_budget,
    refuse_oversized,
)

# KEYS: the window, the token budget, then one counter per money budget.
# ARGV: now, window, rpm, tpm, tokens, member, budget, spent, cost, then per money budget
# its limit, what the database says was spent (-1: not read) and the counter's TTL in ms.
# Every check runs before any write, so a refusal leaves nothing behind.
_RESERVE_LUA = """
local window_key, budget_key = KEYS[1], KEYS[2]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local member, budget, spent = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local cost = tonumber(ARGV[9])
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
end
for i = 3, #KEYS do
  local base = 9 + (i - 3) * 3
  local limit, loaded, ttl = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local current = redis.call('GET', KEYS[i])
  if not current then
    if loaded < 0 then return {-4, '0'} end
    redis.call('SET', KEYS[i], loaded)
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
    current = loaded
  end
  if tonumber(current) + cost > limit then return {-3, tostring(current), tostring(i - 2)} end
end
if budget >= 0 then redis.call('INCRBY', budget_key, tokens) end
for i = 3, #KEYS do redis.call('INCRBY', KEYS[i], cost) end
redis.call('ZADD', window_key, now, member .. ':' .. tokens)
redis.call('PEXPIRE', window_key, math.ceil(window * 2000))
return {1, '0'}
"""

_RECONCILE_LUA = """
local window_key, budget_key = KEYS[1], KEYS[2]
local old, new, delta, cost_delta = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local score = redis.call('ZSCORE', window_key, old)
if score then
  redis.call('ZREM', window_key, old)
  redis.call('ZADD', window_key, score, new)
end
if redis.call('EXISTS', budget_key) == 1 then redis.call('INCRBY', budget_key, delta) end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], cost_delta) end
end
return 1
"""

# How long a money counter outlives its period in Redis (``total``: for ever).
_COUNTER_TTL_MS = {"day": 3 * 86_400_000, "month": 40 * 86_400_000, "total": 0}


class RedisLimiter:
    """The same contract on Redis, so every gateway replica draws on one quota."""

    def __init__(
        self,
        url: str,
        spent: SpentLoader,
        failure_mode: str = "closed",
        prefix: str = "lathe",
        money_spent: MoneyLoader = no_money_spent,
    ) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._spent = spent
        self._money_spent = money_spent
        self._failure_mode = failure_mode
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._reconcile = self._redis.register_script(_RECONCILE_LUA)

    def _keys(self, key_id: str, counters: tuple[str, ...] = ()) -> list[str]:
        spend = [f"{self._prefix}:spend:{c}" for c in counters]
        return [f"{self._prefix}:quota:{key_id}:window", f"{self._prefix}:quota:{key_id}:budget", *spend]

    async def reserve(self, key_id: str, tokens: int, limits: Limits, cost: int = 0) -> Reservation | None:
        import redis

        refuse_oversized(tokens, limits)
        member = uuid.uuid4().hex
        now = time.time()
        counters = tuple(m.counter for m in limits.money)
        try:
            spent = await self._spent(key_id) if limits.budget is not None else 0
            loaded = [-1] * len(limits.money)  # the database is read only for a counter Redis lacks
            for _ in range(2):
                status, value, *which = await self._reserve(
                    keys=self._keys(key_id, counters),
                    args=[
                        now, WINDOW_S,
                        -1 if limits.rpm is None else limits.rpm,
                        -1 if limits.tpm is None else limits.tpm,
                        tokens, member,
                        -1 if limits.budget is None else limits.budget,
                        spent, cost,
                        *(x for m, had in zip(limits.money, loaded, strict=True)
                          for x in (m.limit, had, _COUNTER_TTL_MS[m.period])),
                    ],
                )  # fmt: skip
                if int(status) != -4:
                    break
                loaded = [await self._money_spent(m) for m in limits.money]
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
        if int(status) == -3:
            raise over_budget(limits.money[int(which[0]) - 1], int(value), cost)
        return Reservation(key_id, f"{member}:{tokens}", tokens, now, cost=cost, counters=counters)

    async def reconcile(self, reservation: Reservation | None, actual_tokens: int, actual_cost: int = 0) -> None:
        import redis

        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        new_member = f"{reservation.member.rsplit(':', 1)[0]}:{actual_tokens}"
        # On failure the reservation stays as reserved: it can only over-count, never under.
        with contextlib.suppress(redis.RedisError, OSError):
            await self._reconcile(
                keys=self._keys(reservation.key_id, reservation.counters),
                args=[
                    reservation.member,
                    new_member,
                    actual_tokens - reservation.tokens,
                    actual_cost - reservation.cost,
                ],
            )

    async def close(self) -> None:
        await self._redis.aclose()
