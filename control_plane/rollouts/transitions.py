"""The state changes a rollout goes through, each persisted with the event that explains it.

Weight changes are revisions written through ControlPlane.apply with the author
`rollout:<id>`, which the write guard lets through. A revision is committed before the
rollout row that records it; a crash in between is repaired on restart by
`_recover`. Callers hold `_lock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from control_plane.domain import DesiredState, ModelSpec
from control_plane.errors import ControlPlaneError, NotFoundError, StoreError
from control_plane.rollouts.model import EventKind, Rollout, RolloutEvent
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.rollouts.verdict import Judgement
from control_plane.rollouts.weights import promoted, split_weights, weighted, with_model
from control_plane.service import ControlPlane


class Transitions:
    def __init__(
        self, control_plane: ControlPlane, store: SQLiteRolloutStore, clock: Callable[[], float]
    ) -> None:
        self._cp = control_plane
        self._store = store
        self._clock = clock
        # One transition at a time, loop and manual actions alike.
        self._lock = asyncio.Lock()

    @property
    def store(self) -> SQLiteRolloutStore:
        return self._store

    # --- building blocks ------------------------------------------------------------

    def _updated(self, rollout: Rollout, **changes: Any) -> Rollout:
        return rollout.model_copy(update={**changes, "updated_at": self._clock()})

    def _event(
        self,
        rollout: Rollout,
        kind: EventKind,
        message: str,
        *,
        revision: int | None = None,
        author: str | None = None,
    ) -> RolloutEvent:
        return RolloutEvent(
            rollout_id=rollout.id,
            at=self._clock(),
            kind=kind,
            weight=rollout.weight,
            step_index=rollout.step_index,
            revision=revision,
            author=author,
            message=message,
        )

    def _checked(
        self,
        rollout: Rollout,
        judgement: Judgement,
        figures: dict[str, Any],
        *,
        failed: bool = False,
    ) -> Rollout:
        return self._updated(
            rollout,
            checks=rollout.checks + 1,
            failed_checks=rollout.failed_checks + int(failed),
            last_verdict=judgement.verdict,
            last_figures=figures,
            message=f"{judgement.verdict}: {judgement.reason}",
        )

    def _check_event(
        self,
        rollout: Rollout,
        judgement: Judgement,
        figures: dict[str, Any],
        outcome: str | None = None,
    ) -> RolloutEvent:
        message = judgement.reason if outcome is None else f"{judgement.reason}; {outcome}"
        event = self._event(rollout, "check", message)
        return event.model_copy(update={"verdict": judgement.verdict, "figures": figures})

    async def _write(
        self, rollout: Rollout, change: Callable[[ModelSpec], ModelSpec], message: str
    ) -> int:
        """Commit and push one change of the rollout's model; the new revision's number."""

        def mutate(state: DesiredState) -> DesiredState:
            model = state.models.get(rollout.model)
            if model is None:
                raise NotFoundError(f"model '{rollout.model}' does not exist")
            return with_model(state, rollout.model, change(model))

        result = await self._cp.apply(
            mutate, author=rollout.author_tag, message=f"rollout {rollout.id}: {message}"
        )
        return result.revision.number

    async def _written(
        self,
        rollout: Rollout,
        change: Callable[[ModelSpec], ModelSpec],
        message: str,
        *,
        strict: bool = False,
    ) -> int | None:
        """`_write`, where a refused write fails the rollout (None) and a store outage raises.

        `strict` raises a refusal too, for a caller that must hear it (starting a rollout).
        """
        try:
            return await self._write(rollout, change, message)
        except StoreError:
            raise  # transient: the loop retries next interval, nothing changed
        except ControlPlaneError as exc:
            await self._fail(rollout, f"the control plane refused its write: {exc.message}")
            if strict:
                raise
            return None

    # --- transitions ----------------------------------------------------------------

    async def _set_step(
        self,
        rollout: Rollout,
        index: int,
        why: str,
        *,
        strict: bool = False,
        previous_weight: int | None = None,
    ) -> Rollout:
        weight = rollout.spec.steps[index]
        # A new rollout is stored at its first step's weight before that step is
        # written, so its caller says where the canary really was (0%).
        before = rollout.weight if previous_weight is None else previous_weight
        message = f"canary '{rollout.canary}' {before}% → {weight}% ({why})"
        stable, canary = rollout.stable, rollout.canary
        revision = await self._written(
            rollout, lambda m: weighted(m, stable, canary, weight), message, strict=strict
        )
        if revision is None:
            return self._store.get(rollout.id)
        updated = self._updated(
            rollout,
            status="running",
            step_index=index,
            weight=weight,
            next_check_at=self._clock() + rollout.spec.interval_s,
            message=f"step {index + 1}/{len(rollout.spec.steps)}: {message}",
        )
        self._store.save(updated, self._event(updated, "advanced", message, revision=revision))
        return updated

    async def _promote(self, rollout: Rollout, why: str, *, author: str | None = None) -> Rollout:
        message = f"'{rollout.canary}' is now the stable backend of '{rollout.model}' ({why})"
        stable, canary = rollout.stable, rollout.canary
        revision = await self._written(rollout, lambda m: promoted(m, stable, canary), message)
        if revision is None:
            return self._store.get(rollout.id)
        updated = self._finished(rollout, "promoted", message, weight=100)
        event = self._event(updated, "promoted", message, revision=revision, author=author)
        self._store.save(updated, event)
        return updated

    async def _roll_back(self, rollout: Rollout, why: str) -> Rollout:
        message = (
            f"rolled back: {rollout.failed_checks} failed check(s), "
            f"{rollout.spec.gates.max_failed_checks} tolerated ({why}); "
            f"canary '{rollout.canary}' at 0%"
        )
        return await self._to_zero(rollout, "rolled_back", message)

    async def _to_zero(
        self,
        rollout: Rollout,
        status: Any,
        message: str,
        *,
        author: str | None = None,
    ) -> Rollout:
        """Rollback and abort: the canary keeps a weight-0 split (no traffic, easy to retry)."""
        stable, canary = rollout.stable, rollout.canary
        revision = await self._written(rollout, lambda m: weighted(m, stable, canary, 0), message)
        if revision is None:
            return self._store.get(rollout.id)
        updated = self._finished(rollout, status, message, weight=0)
        self._store.save(
            updated, self._event(updated, status, message, revision=revision, author=author)
        )
        return updated

    async def _recover(self, rollout: Rollout) -> None:
        """After a restart: make the model's splits match the stored step, then go on."""
        state = self._cp.head.state
        model = state.models.get(rollout.model)
        if model is None or rollout.canary not in state.backends:
            await self._fail(rollout, "its model or canary backend is gone after a restart")
            return
        revision = None
        expected = weighted(model, rollout.stable, rollout.canary, rollout.weight)
        if split_weights(model) != split_weights(expected):
            # The process died between committing a revision and recording the step; the
            # stored step is the one the rollout vouches for.
            try:
                revision = await self._write(
                    rollout,
                    lambda m: weighted(m, rollout.stable, rollout.canary, rollout.weight),
                    f"restore canary weight {rollout.weight}% after a restart",
                )
            except ControlPlaneError as exc:
                await self._fail(rollout, f"cannot restore its weight after a restart: {exc}")
                return
        now = self._clock()
        status = "paused" if rollout.status == "paused" else "running"
        next_check = rollout.next_check_at if status == "running" else None
        if status == "running" and next_check is None:
            next_check = now + rollout.spec.interval_s
        message = (
            f"control plane restarted; {'still paused' if status == 'paused' else 'resuming'} "
            f"at step {rollout.step_index + 1}/{len(rollout.spec.steps)} ({rollout.weight}%)"
        )
        updated = self._updated(rollout, status=status, next_check_at=next_check, message=message)
        self._store.save(updated, self._event(updated, "recovered", message, revision=revision))

    async def _note(self, rollout: Rollout, message: str) -> None:
        """A check that could not judge: record why and hold for one interval."""
        updated = self._updated(
            rollout,
            checks=rollout.checks + 1,
            last_verdict="error",
            next_check_at=self._clock() + rollout.spec.interval_s,
            message=message,
        )
        event = self._event(updated, "check", message)
        self._store.save(updated, event.model_copy(update={"verdict": "error"}))

    async def _fail(self, rollout: Rollout, why: str) -> None:
        updated = self._finished(rollout, "failed", f"failed: {why}")
        self._store.save(updated, self._event(updated, "failed", f"failed: {why}"))

    def _finished(self, rollout: Rollout, status: Any, message: str, **changes: Any) -> Rollout:
        now = self._clock()
        return self._updated(
            rollout,
            status=status,
            next_check_at=None,
            finished_at=now,
            message=message,
            **changes,
        )
