"""The rollout controller: one asyncio loop that judges every running rollout once per interval.

Each check reads the canary's figures for the last interval, judges them against the
gates and then, under one lock shared with the manual actions: holds (thin traffic,
a tolerated failure, a metrics error), advances the weight (a revision authored
`rollout:<id>`, a route-only push), rolls back to 0%, or promotes. Everything it does
is persisted before the next await that could lose it, and the next check time is
stored, so a restart resumes the same step on the same schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from control_plane.errors import ConflictError
from control_plane.metrics.source import MetricsSource, WindowStats
from control_plane.rollouts.guard import RolloutGuard
from control_plane.rollouts.model import Rollout, RolloutEvent, RolloutSpec
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.rollouts.transitions import Transitions
from control_plane.rollouts.verdict import Judgement, judge
from control_plane.rollouts.weights import stable_backend
from control_plane.service import ControlPlane

log = logging.getLogger(__name__)

# A metrics read may not stall every other rollout's checks for longer than this.
MAX_METRICS_WAIT_S = 30.0
# How long stop() lets an in-flight check finish before cancelling it.
STOP_GRACE_S = 2.0


class RolloutController(Transitions):
    def __init__(
        self,
        control_plane: ControlPlane,
        metrics: MetricsSource,
        store: SQLiteRolloutStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(control_plane, store, clock)
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # In memory only: when a rollout whose check just ran (or crashed) may run again,
        # so a failing store or a stale row can never spin the loop.
        self._not_before: dict[int, float] = {}

    @property
    def guard(self) -> RolloutGuard:
        return RolloutGuard(self._store.active)

    # --- reads ----------------------------------------------------------------------

    def get(self, rollout_id: int) -> Rollout:
        return self._store.get(rollout_id)

    def find(
        self, *, model: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Rollout]:
        return self._store.find(model=model, status=status, limit=limit)

    def events(
        self, rollout_id: int, *, after: int | None = None, limit: int = 1000
    ) -> list[RolloutEvent]:
        self._store.get(rollout_id)  # 404 for an unknown rollout, not an empty list
        return self._store.events(rollout_id, after=after, limit=limit)

    def status(self, rollout_id: int, *, events: int = 50) -> dict[str, Any]:
        """A rollout with its latest events and the server's clock, for `next_check_at`."""
        body = self._store.get(rollout_id).public()
        body["events"] = [e.public() for e in self._store.recent_events(rollout_id, limit=events)]
        body["now"] = self._clock()
        return body

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every active rollout from the store, then start the loop."""
        for rollout in self._store.active():
            try:
                async with self._lock:
                    await self._recover(self._store.get(rollout.id))
            except Exception:
                log.exception("rollout %d could not be resumed", rollout.id)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="rollout-controller")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- commands -------------------------------------------------------------------

    async def start_rollout(self, spec: RolloutSpec, *, author: str) -> Rollout:
        async with self._lock:
            for other in self._store.active():
                if other.model == spec.model:
                    raise ConflictError(
                        f"model '{spec.model}' already has an active rollout: {other.id} "
                        f"({other.status}, canary '{other.canary}' at {other.weight}%); "
                        f"promote or abort it first",
                        field="model",
                    )
            stable = stable_backend(self._cp.head.state, spec.model, spec.canary)
            steps = " → ".join(f"{s}%" for s in spec.steps)
            message = f"started by {author}: canary '{spec.canary}' over '{stable}', {steps}"
            first = RolloutEvent(
                rollout_id=0,
                at=self._clock(),
                kind="started",
                weight=0,
                step_index=0,
                author=author,
                message=message,
            )
            rollout = self._store.create(
                spec,
                stable=stable,
                status="pending",
                author=author,
                now=self._clock(),
                event=first,
            )
            try:
                rollout = await self._set_step(
                    rollout, 0, "first step", strict=True, previous_weight=0
                )
            except Exception as exc:
                # Refused or not stored: the caller hears why, and the model is not left
                # owned by a rollout that never ran.
                current = self._store.get(rollout.id)
                if current.active:
                    await self._fail(current, f"its first step could not be written: {exc}")
                raise
        self._wake.set()
        return rollout

    async def pause(self, rollout_id: int, *, author: str) -> Rollout:
        async with self._lock:
            rollout = self._active(rollout_id, "paused")
            if rollout.status == "paused":
                return rollout
            message = f"paused by {author} at {rollout.weight}%"
            updated = self._updated(rollout, status="paused", next_check_at=None, message=message)
            self._store.save(updated, self._event(updated, "paused", message, author=author))
            return updated

    async def resume(self, rollout_id: int, *, author: str) -> Rollout:
        async with self._lock:
            rollout = self._active(rollout_id, "resumed")
            if rollout.status == "running":
                return rollout
            message = f"resumed by {author} at {rollout.weight}%"
            updated = self._updated(
                rollout,
                status="running",
                next_check_at=self._clock() + rollout.spec.interval_s,
                message=message,
            )
            self._store.save(updated, self._event(updated, "resumed", message, author=author))
            self._not_before.pop(rollout_id, None)
        self._wake.set()
        return updated

    async def promote(self, rollout_id: int, *, author: str) -> Rollout:
        async with self._lock:
            rollout = self._active(rollout_id, "promoted")
            return await self._promote(rollout, f"promoted by {author}", author=author)

    async def abort(self, rollout_id: int, *, author: str) -> Rollout:
        async with self._lock:
            rollout = self._active(rollout_id, "aborted")
            return await self._to_zero(
                rollout,
                "aborted",
                f"aborted by {author}; all traffic back on '{rollout.stable}'",
                author=author,
            )

    def _active(self, rollout_id: int, what: str) -> Rollout:
        rollout = self._store.get(rollout_id)
        if not rollout.active:
            raise ConflictError(
                f"rollout {rollout_id} is {rollout.status}; it cannot be {what} any more"
            )
        return rollout

    # --- the loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._run_due()
            except Exception:
                log.exception("rollout loop iteration failed; retrying in 1 s")
                delay = 1.0
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _run_due(self) -> float | None:
        """Run the checks that are due; seconds until the next one (None: nothing running)."""
        now = self._clock()
        running = [r for r in self._store.active() if r.status == "running"]
        due_at = {
            r.id: max(r.next_check_at or now, self._not_before.get(r.id, 0.0)) for r in running
        }
        due = [r for r in running if due_at[r.id] <= now]
        if due:
            await asyncio.gather(*(self._check_safely(r) for r in due))
            return 0.0
        return min((at - now for at in due_at.values()), default=None)

    async def _check_safely(self, rollout: Rollout) -> None:
        try:
            await self._check(rollout)
        except Exception as exc:
            log.exception("rollout %d: check failed", rollout.id)
            with contextlib.suppress(Exception):
                async with self._lock:
                    current = self._store.get(rollout.id)
                    if current.status == "running":
                        await self._note(current, f"check failed ({exc}); holding")
        finally:
            self._not_before[rollout.id] = self._clock() + rollout.spec.interval_s

    async def _check(self, seen: Rollout) -> None:
        if seen.failed_checks > seen.spec.gates.max_failed_checks:
            # A rollback that could not be written last time; retry it before judging again.
            async with self._lock:
                if self._store.get(seen.id) == seen:
                    await self._roll_back(seen, "retrying the rollback")
            return
        stats, error = await self._read(seen)
        async with self._lock:
            rollout = self._store.get(seen.id)
            if rollout != seen:
                return  # a manual action changed it while the figures were read
            if stats is None:
                await self._note(rollout, f"metrics unavailable ({error}); holding")
                return
            judgement = judge(stats, rollout.spec.gates)
            await self._act(rollout, stats, judgement)

    async def _read(self, rollout: Rollout) -> tuple[WindowStats | None, str | None]:
        timeout = min(max(rollout.spec.interval_s, 1.0), MAX_METRICS_WAIT_S)
        try:
            stats = await asyncio.wait_for(
                self._metrics.cluster_stats(rollout.canary, rollout.spec.interval_s), timeout
            )
        except TimeoutError:
            return None, f"no answer in {timeout:g}s"
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return stats, None

    async def _act(self, rollout: Rollout, stats: WindowStats, judgement: Judgement) -> None:
        figures = stats.public()
        gates = rollout.spec.gates
        if judgement.verdict == "pass":
            checked = self._checked(rollout, judgement, figures)
            self._store.save(checked, self._check_event(checked, judgement, figures))
            if rollout.step_index + 1 < len(rollout.spec.steps):
                await self._set_step(checked, rollout.step_index + 1, "gates passed")
            else:
                await self._promote(checked, "gates passed at the last step")
            return
        failed = judgement.verdict == "fail"
        checked = self._checked(rollout, judgement, figures, failed=failed)
        if failed and checked.failed_checks > gates.max_failed_checks:
            self._store.save(checked, self._check_event(checked, judgement, figures))
            await self._roll_back(checked, judgement.reason)
            return
        hold = "holding"
        if failed:
            tolerated = gates.max_failed_checks
            hold = f"failed check {checked.failed_checks} of {tolerated} tolerated; holding"
        checked = self._updated(
            checked,
            next_check_at=self._clock() + rollout.spec.interval_s,
            message=f"{judgement.verdict}: {judgement.reason}; {hold} at {rollout.weight}%",
        )
        self._store.save(checked, self._check_event(checked, judgement, figures, hold))

    async def aclose(self) -> None:
        """Stop the loop and close the store (stop() alone leaves it open for a restart)."""
        await self.stop()
        self._store.close()
