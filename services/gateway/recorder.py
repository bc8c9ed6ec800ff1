"""Usage rows and the audit log's rows, written in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from services.gateway.keys import KeyStore

log = logging.getLogger(__name__)


class UsageRecorder:
    """Writes usage, and the audit log's rows, in batches off the request path: a commit per
    request would cost more than the gateway's whole latency budget. Every ``prune_every_s``
    it also runs ``prune`` (the audit log's retention).

    ``flush`` returns once everything added before the call is in the database, even when
    another flush is already writing: a usage report or a budget seed that flushes first
    never misses a batch in flight. Another replica's rows reach the database within its
    own ``flush_every_s``."""

    def __init__(
        self,
        store: KeyStore,
        flush_every_s: float = 0.5,
        prune: Callable[[], int] | None = None,
        prune_every_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.flush_every_s = flush_every_s
        self.prune = prune
        self.prune_every_s = prune_every_s
        self._pending: list[tuple] = []  # KeyStore.record_usage's rows
        self._audit: list[Any] = []  # AuditEntry (services.gateway.audit)
        self._task: asyncio.Task | None = None
        self._writing = asyncio.Lock()

    def add(
        self,
        key_id: str,
        model: str,
        prompt: int,
        completion: int,
        status: int,
        audit: Any = None,
        usage: bool = True,
        cost_micro: int = 0,
        team: str | None = None,
    ) -> None:
        """A request's usage row (``usage=False``: none, a refusal spent nothing) and its audit entry."""
        if usage:
            self._pending.append((key_id, model, prompt, completion, status, cost_micro, team))
        if audit is not None:
            self._audit.append(audit)

    async def flush(self) -> None:
        async with self._writing:
            await self._write()

    async def _write(self) -> None:
        batch, self._pending = self._pending, []
        audit, self._audit = self._audit, []
        if batch or audit:
            try:
                await asyncio.to_thread(self.store.record_usage, batch, [entry.row() for entry in audit])
            except Exception:
                log.exception("could not write %d usage records; keeping them for the next flush", len(batch))
                self._pending = batch + self._pending
                self._audit = audit + self._audit

    async def run(self) -> None:
        pruned_at = 0.0
        while True:
            await asyncio.sleep(self.flush_every_s)
            await self.flush()
            if self.prune is not None and time.monotonic() - pruned_at >= self.prune_every_s:
                pruned_at = time.monotonic()
                try:
                    gone = await asyncio.to_thread(self.prune)
                except Exception:
                    log.exception("could not prune the audit log; trying again in %.0f s", self.prune_every_s)
                else:
                    if gone:
                        log.info("audit log pruned", extra={"fields": {"rows": gone}})

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="usage-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
