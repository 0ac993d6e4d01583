"""The write guard: while a rollout is active, its model's splits and its backends are its own.

Registered with ControlPlane.add_guard, so it sees every write (admin API, restore,
whole-state apply) before it is accepted. The rollout's own writes carry the author
`rollout:<id>` and pass; anything else that would change the model's splits, delete
the model, or delete the canary or stable backend is refused with 409.
"""

from __future__ import annotations

from collections.abc import Callable

from control_plane.domain import DesiredState
from control_plane.errors import ConflictError
from control_plane.rollouts.model import Rollout


class RolloutGuard:
    def __init__(self, active: Callable[[], list[Rollout]]) -> None:
        # Read at every write, straight from the store, so the guard can never disagree
        # with what the controller persisted.
        self._active = active

    def __call__(self, current: DesiredState, proposed: DesiredState, author: str) -> None:
        for rollout in self._active():
            if author == rollout.author_tag:
                continue
            self._check(rollout, current, proposed)

    @staticmethod
    def _check(rollout: Rollout, current: DesiredState, proposed: DesiredState) -> None:
        how = (
            f"`ttsgw rollout pause {rollout.id}` holds its weight, `ttsgw rollout abort "
            f"{rollout.id}` sends all traffic back to '{rollout.stable}' and releases the model "
            f"(POST /api/v1/rollouts/{rollout.id}/pause or /abort)"
        )
        owner = (
            f"rollout {rollout.id} ({rollout.status}, canary '{rollout.canary}' at "
            f"{rollout.weight}%)"
        )
        before, after = current.models.get(rollout.model), proposed.models.get(rollout.model)
        if before is not None and after is None:
            raise ConflictError(
                f"model '{rollout.model}' is being rolled out by {owner}; {how}",
                field="models",
            )
        if before is not None and after is not None and before.splits != after.splits:
            raise ConflictError(
                f"the splits of model '{rollout.model}' belong to {owner}; {how}",
                field="splits",
            )
        for backend in (rollout.canary, rollout.stable):
            if backend in current.backends and backend not in proposed.backends:
                raise ConflictError(
                    f"backend '{backend}' is in use by {owner} on model '{rollout.model}'; {how}",
                    field="backends",
                )
