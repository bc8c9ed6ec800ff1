"""The newest rollout of every model, copied to Redis so replicas read it without the database.

The database stays the source of truth: every transition is written there first (a
compare-and-set), then copied here. Each replica reads this copy every
``LATHE_GATEWAY_ROLLOUT_INTERVAL_S`` (one ``HGETALL``) and the database only every
``LATHE_GATEWAY_ROLLOUT_RECONCILE_S``, or at once when the copy is missing (Redis
restarted or was flushed) or a decision found it stale.

Copies can arrive out of order (two replicas write one after the other, and the older
one lands last), so a Lua script keeps, per model, only the newest: the later-created
rollout, and within one rollout the longer history. A copy is never older than what
any replica wrote before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from lathe.telemetry import log_fields
from services.gateway.rollouts.store import Rollout, RolloutStore

log = logging.getLogger(__name__)

# KEYS: the copies, their ranks, the marker. ARGV: (model, document, created_at, seq) × n, then a full flag.
_PUT_LUA = """
local written = 0
local full = ARGV[#ARGV] == '1'
for i = 1, #ARGV - 1, 4 do
  local model, document = ARGV[i], ARGV[i + 1]
  local created, seq = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local newer = true
  local rank = redis.call('HGET', KEYS[2], model)
  if rank then
    local at, n = string.match(rank, '^([^|]+)|([^|]+)$')
    at, n = tonumber(at), tonumber(n)
    if at > created or (at == created and n > seq) then newer = false end
  end
  if newer then
    redis.call('HSET', KEYS[1], model, document)
    redis.call('HSET', KEYS[2], model, ARGV[i + 2] .. '|' .. ARGV[i + 3])
    written = written + 1
  end
end
if full then redis.call('SET', KEYS[3], '1') end
return written
"""


class RolloutCache:
    """Rollouts in Redis: ``put`` after each transition, ``read`` on each tick."""

    def __init__(self, url: str, prefix: str = "lathe") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.keys = [f"{prefix}:rollouts:current", f"{prefix}:rollouts:rank", f"{prefix}:rollouts:synced"]
        self._put = self._redis.register_script(_PUT_LUA)

    async def read(self) -> dict[str, Rollout] | None:
        """Per model, its newest rollout; None when the copy is missing and the database must fill it."""
        async with self._redis.pipeline(transaction=True) as pipe:
            documents, synced = await pipe.hgetall(self.keys[0]).exists(self.keys[2]).execute()
        if not synced:
            return None
        return {model.decode(): Rollout.from_record(json.loads(doc)) for model, doc in documents.items()}

    async def put(self, rollouts: list[Rollout], *, full: bool = False) -> int:
        """Copy these rollouts where they are newer; ``full``: they are all of the database's."""
        args: list[str | int] = []
        for rollout in rollouts:
            document = json.dumps(rollout.to_record(), default=str)
            args += [rollout.model, document, repr(rollout.created_at), len(rollout.history)]
        return int(await self._put(keys=self.keys, args=[*args, "1" if full else "0"]))

    async def close(self) -> None:
        await self._redis.aclose()


class CurrentRollouts:
    """Where a replica reads the newest rollouts: the Redis copy between reconciliations,
    the database otherwise. Redis failing costs speed, never correctness: the database is
    read until it answers again."""

    def __init__(self, store: RolloutStore, cache: RolloutCache | None, reconcile_s: float) -> None:
        self.store = store
        self.cache = cache
        self.reconcile_s = reconcile_s
        self._reconcile_at = 0.0  # monotonic: when the database is read next (at once: 0)
        self._failing = False

    async def read(self) -> dict[str, Rollout]:
        if self.cache is not None and time.monotonic() < self._reconcile_at:
            cached = await self._guarded(self.cache.read())
            if cached is not None:
                return cached
        current = await asyncio.to_thread(self.store.current)
        self._reconcile_at = time.monotonic() + self.reconcile_s
        await self.copy(list(current.values()), full=True)
        return current

    async def copy(self, rollouts: list[Rollout], full: bool = False) -> None:
        """After a transition in the database: the new state, for every replica's next read."""
        if self.cache is not None:
            await self._guarded(self.cache.put(rollouts, full=full))

    def stale(self) -> None:
        """A decision found the copy behind the database: read the database next time."""
        self._reconcile_at = 0.0

    async def _guarded(self, call) -> Any:
        try:
            result = await call
        except Exception as exc:
            if not self._failing:
                log.warning("the rollouts' copy in Redis is unavailable; reading the database",
                            extra=log_fields(error=f"{type(exc).__name__}: {exc}"))  # fmt: skip
            self._failing, self._reconcile_at = True, 0.0
            return None
        if self._failing:
            log.info("the rollouts' copy in Redis is available again")
            self._failing = False
        return result

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
