"""The rollout loop: every replica applies the weights and records figures; the leader decides.

Each ``interval_s`` a replica writes its windows and request ids to the database, reads
the newest rollout of every model (from the Redis copy when there is one, see ``cache``;
from the database otherwise) and sets the candidate's share on its router, then takes or
renews the leader lease. The leader alone analyses: a waiting rollout starts
once a healthy backend serves the candidate; a running one advances, promotes (the
alias moves in MLflow) or rolls back. Every transition is a compare-and-set on the
rollout's row, so a leader that lost its lease mid-decision cannot act twice, and every
transition is mirrored onto both versions in MLflow as ``lathe.rollout.*`` tags.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from typing import Any

from lathe.errors import ConflictError, InvalidRequestError, NotFoundError
from lathe.registry import ModelRegistry
from lathe.telemetry import log_fields
from services.gateway.metrics import GatewayMetrics
from services.gateway.rollouts import judge
from services.gateway.rollouts.analysis import Window, judge_step
from services.gateway.rollouts.cache import CurrentRollouts, RolloutCache
from services.gateway.rollouts.spec import RolloutSpec
from services.gateway.rollouts.store import Rollout, RolloutStore
from services.gateway.routing import Router

log = logging.getLogger(__name__)

LEASE = "rollout-leader"


class RolloutController:
    def __init__(
        self,
        store: RolloutStore,
        router: Router,
        metrics: GatewayMetrics,
        registry: ModelRegistry,
        *,
        interval_s: float = 1.0,
        lease_ttl_s: float = 10.0,
        feedback_window_s: float = 3600.0,
        cache: RolloutCache | None = None,
        reconcile_s: float = 10.0,
    ) -> None:
        self.store = store
        self.router = router
        self.metrics = metrics
        self.registry = registry
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s
        self.feedback_window_s = feedback_window_s
        self.shared = CurrentRollouts(store, cache, reconcile_s)
        self.replica = uuid.uuid4().hex[:12]
        self.current: dict[str, Rollout] = {}  # per model, the newest rollout
        self.leader = False
        self._windows: dict[tuple[str, int, str], Window] = {}
        self._requests: list[tuple[str, str, str]] = []
        self._judging: set[asyncio.Task] = set()
        self._applied: dict[str, tuple[str, str, int]] = {}
        self.rng = random.Random()

    # -- on the request path (no I/O) ------------------------------------------------
    def running(self, model: str) -> Rollout | None:
        rollout = self.current.get(model)
        return rollout if rollout is not None and rollout.state == "running" else None

    def window(self, model: str, version: str) -> Window | None:
        rollout = self.running(model)
        if rollout is None:
            return None
        group = version if version == rollout.version else "champion"
        return self._windows.setdefault((rollout.id, rollout.step, group), Window())

    def observe(self, model: str, version: str, ok: bool, ttft_s: float | None = None, itl_s: float | None = None):
        window = self.window(model, version)
        if window is not None:
            window.record(ok, ttft_s, itl_s)

    def note_request(self, request_id: str | None, model: str, version: str) -> None:
        if request_id:
            self._requests.append((request_id, model, version))

    def maybe_judge(self, http, model: str, version: str, request: dict, response: dict) -> None:
        """Send a sampled answer to the rollout's judge, in the background."""
        rollout = self.running(model)
        if rollout is None or rollout.spec.judge is None or self.rng.random() >= rollout.spec.judge.sample_rate:
            return
        pair = judge.question_and_answer(request, response)
        if pair is None:
            return

        async def run() -> None:
            value = await judge.grade(self.router, http, rollout.spec.judge.model, *pair)
            if value is not None:
                self.score(model, version, value, "judge")

        task = asyncio.create_task(run())
        self._judging.add(task)
        task.add_done_callback(self._judging.discard)

    # -- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or MLflow may blink: keep the last weights
                log.warning("rollout loop failed; retrying", extra=log_fields(error=f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> None:
        await self.flush()
        self.current = await self.shared.read()
        self.apply()
        self.leader = await asyncio.to_thread(self.store.hold_lease, LEASE, self.replica, self.lease_ttl_s)
        if self.leader:
            for rollout in list(self.current.values()):
                if rollout.active:
                    try:
                        await self.decide(rollout)
                    except ConflictError:  # the copy it read was stale: the database says what is true
                        self.shared.stale()

    async def flush(self) -> None:
        windows = {key: Window.from_json(w.to_json()) for key, w in self._windows.items()}
        requests, self._requests = self._requests, []
        await asyncio.to_thread(self.store.save_windows, self.replica, windows)
        await asyncio.to_thread(self.store.record_requests, requests, self.feedback_window_s)
        live = {r.id for r in self.current.values() if r.state == "running"}
        self._windows = {k: w for k, w in self._windows.items() if k[0] in live}

    def apply(self) -> None:
        """Set every model's split on this replica's router, and the gauges.

        A split is set when the rollout moves (or the replica starts), so a canary set by
        hand with ``/admin/canary`` after a rollout ended stays until the next one.
        """
        for model, rollout in self.current.items():
            pool = self.router.pools.get(model)
            weight = rollout.weight()
            mark = (rollout.id, rollout.state, rollout.step)
            if pool is not None and self._applied.get(model) != mark:
                pool.canary = (rollout.version, weight)
                self._applied[model] = mark
                for decision in ("advance", "promote", "rollback"):  # counted from 0, not from absent
                    self.metrics.rollout_decisions.labels(model=model, decision=decision)
            self.metrics.rollout_step.labels(model=model).set(rollout.step + 1 if rollout.state == "running" else 0)
            self.metrics.rollout_weight.labels(model=model, version=rollout.version).set(weight)
            if rollout.champion:
                self.metrics.rollout_weight.labels(model=model, version=rollout.champion).set(100.0 - weight)

    async def stop(self) -> None:
        await self.flush()
        if self.leader:
            await asyncio.to_thread(self.store.release_lease, LEASE, self.replica)
        await self.shared.close()

    # -- the leader's decisions ------------------------------------------------------
    async def decide(self, rollout: Rollout) -> None:
        now = time.time()
        if rollout.state == "waiting":
            if self._candidate_ready(rollout):
                await self._move(rollout, "started", "a healthy backend serves the candidate", state="running",
                                 step=0, step_started_at=now)  # fmt: skip
            elif now - rollout.created_at > rollout.spec.backend_wait_s:
                why = f"no healthy backend served version {rollout.version} within {rollout.spec.backend_wait_s:g} s"
                await self._move(rollout, "rollback", why, state="rolled_back")
            return
        step = rollout.spec.steps[rollout.step]
        windows = await asyncio.to_thread(self.store.windows, rollout.id, rollout.step)
        champion = windows.get("champion", Window())
        candidate = windows.get(rollout.version, Window())
        verdict = judge_step(step, rollout.spec.thresholds, champion, candidate, now - rollout.step_started_at)
        figures = {"champion": champion.figures(), "candidate": candidate.figures()}
        if verdict.action == "rollback":
            await self._move(rollout, "rollback", verdict.reason, figures, state="rolled_back")
        elif verdict.action == "advance" and rollout.step + 1 < len(rollout.spec.steps):
            await self._move(rollout, "advance", verdict.reason, figures, step=rollout.step + 1, step_started_at=now)
        elif verdict.action == "advance":
            await asyncio.to_thread(self.registry.set_alias, rollout.model, rollout.spec.alias, rollout.version)
            await self._move(rollout, "promote", verdict.reason, figures, state="promoted")

    async def _move(self, rollout: Rollout, event: str, reason: str, figures: dict | None = None,
                    by: str | None = None, **changes: Any) -> Rollout:  # fmt: skip
        entry = {
            "event": event,
            "at": time.time(),
            "by": by or f"gateway {self.replica}",
            "step": rollout.step + 1,
            "weight": rollout.weight(),
            "reason": reason,
            **(figures or {}),
        }
        history = [*rollout.history, entry]
        moved = await asyncio.to_thread(
            self.store.transition, rollout, rollout.state, rollout.step, history=history,
            reason=reason if event in ("rollback", "promote") else rollout.reason, **changes,
        )  # fmt: skip
        if not moved:
            raise ConflictError(f"rollout {rollout.id} changed meanwhile; nothing was done", param="model")
        if event in ("advance", "promote", "rollback"):
            self.metrics.rollout_decisions.labels(model=rollout.model, decision=event).inc()
        log.info("rollout " + event, extra=log_fields(rollout=rollout.id, model=rollout.model, reason=reason))
        updated = await asyncio.to_thread(self.store.get, rollout.id)
        await self.shared.copy([updated])
        self.current[rollout.model] = updated
        self.apply()
        await asyncio.to_thread(self._mirror, updated, entry)
        return updated

    def _candidate_ready(self, rollout: Rollout) -> bool:
        pool = self.router.pools.get(rollout.model)
        return pool is not None and any(b.version == rollout.version and b.available() for b in pool.backends)

    def _mirror(self, rollout: Rollout, entry: dict) -> None:
        """The transition as tags on both versions: who, when, why, the figures."""
        record = json.dumps({"rollout": rollout.id, **entry}, default=str)[:4900]
        seq = len(rollout.history)
        try:
            for role, version in (("candidate", rollout.version), ("champion", rollout.champion)):
                if version is None:
                    continue
                self.registry.set_version_tag(rollout.model, version, f"lathe.rollout.{rollout.id}.{seq}", record)
                self.registry.set_version_tag(rollout.model, version, "lathe.rollout.state",
                                              f"{role}:{rollout.state}")  # fmt: skip
        except Exception as exc:  # the decision stands; the mirror is best effort
            log.warning("could not tag the rollout in MLflow", extra=log_fields(error=f"{type(exc).__name__}: {exc}"))

    # -- what people ask for ---------------------------------------------------------
    async def create(self, spec: RolloutSpec, by: str) -> Rollout:
        """Check and record a new rollout; one creation per model at a time, across replicas."""
        self.router.pool(spec.model)  # a model this gateway does not serve: 404
        lease, holder = "create:" + hashlib.sha1(spec.model.encode()).hexdigest()[:32], uuid.uuid4().hex
        if not await asyncio.to_thread(self.store.hold_lease, lease, holder, 30.0):
            raise ConflictError(f"another rollout of {spec.model} is being created just now", param="model")
        try:
            return await self._create(spec, by)
        finally:
            await asyncio.to_thread(self.store.release_lease, lease, holder)

    async def _create(self, spec: RolloutSpec, by: str) -> Rollout:
        if spec.judge is not None:
            self.router.pool(spec.judge.model)
        await asyncio.to_thread(self.registry.get_version, spec.model, spec.version)  # unregistered: 404
        champion = await asyncio.to_thread(self._holder, spec.model, spec.alias)
        if champion == spec.version:
            raise InvalidRequestError(
                f"{spec.model} v{spec.version} is already @{spec.alias}: nothing to roll out", param="version"
            )
        for rollout in await asyncio.to_thread(self.store.list, spec.model, 20):
            if rollout.active:
                raise ConflictError(
                    f"{spec.model} has an active rollout already ({rollout.id}: v{rollout.version}, {rollout.state})",
                    param="model",
                    hint=f"lathe models rollback {spec.model} ends it",
                )
        entry = {"event": "created", "at": time.time(), "by": by, "reason": spec.reason or "rollout requested"}
        rollout = await asyncio.to_thread(self.store.create, spec, champion, [entry])
        await self.shared.copy([rollout])
        self.current[spec.model] = rollout
        self.apply()
        await asyncio.to_thread(self._mirror, rollout, entry)
        return rollout

    def _holder(self, model: str, alias: str) -> str | None:
        from lathe.errors import AliasNotFoundError

        try:
            return self.registry.resolve(model, alias).version
        except AliasNotFoundError:
            return None

    async def rollback(self, model: str, by: str, reason: str) -> Rollout:
        """End the active rollout, or undo the last promotion (the alias returns to the previous champion)."""
        rollouts = await asyncio.to_thread(self.store.list, model, 1)
        if not rollouts or rollouts[0].state == "rolled_back":
            raise NotFoundError(f"{model} has no active or promoted rollout to roll back", param="model")
        rollout = rollouts[0]
        reason = reason or "rolled back by hand"
        if rollout.state == "promoted":
            if rollout.champion is None:
                raise InvalidRequestError(f"{model} had no champion before v{rollout.version}: nothing to return to")
            await asyncio.to_thread(self.registry.set_alias, model, rollout.spec.alias, rollout.champion)
        return await self._move(rollout, "rollback", reason, by=by, state="rolled_back")

    async def feedback(self, request_id: str, score: float, source: str = "feedback") -> dict[str, Any]:
        await self.flush()
        found = await asyncio.to_thread(self.store.find_request, request_id)
        if found is None:
            hours = self.feedback_window_s / 3600
            raise NotFoundError(
                f"no request {request_id!r} is known to this gateway (feedback is taken for {hours:g} h)",
                param="request_id",
            )
        model, version = found
        self.score(model, version, score, source)
        rollout = self.running(model)
        return {"request_id": request_id, "model": model, "version": version, "score": score,
                "rollout": rollout.id if rollout else None}  # fmt: skip

    def score(self, model: str, version: str, score: float, source: str) -> None:
        self.metrics.feedback.labels(model=model, version=version, source=source).inc()
        window = self.window(model, version)
        if window is not None:
            window.score(score)
