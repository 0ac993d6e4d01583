"""Starting rollouts (what is refused), the write guard, and resuming after a restart."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from control_plane.domain import DesiredState, ModelSpec, Split
from control_plane.errors import ConflictError, InvalidStateError, NotFoundError
from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.model import RolloutSpec
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.service import ControlPlane
from tests.fakes.scripted_metrics import HEALTHY, ScriptedMetrics, stats
from tests.unit.rollouts_rig import control_plane, spec, until, weights

SLOW = 60.0  # an interval no test waits for: only manual actions move these rollouts


@pytest.fixture
async def cp() -> ControlPlane:
    return await control_plane()


@pytest.fixture
async def controller(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[RolloutController]:
    rc = RolloutController(cp, ScriptedMetrics(), SQLiteRolloutStore(tmp_path / "r.db"))
    cp.add_guard(rc.guard)
    await rc.start()
    yield rc
    await rc.aclose()


def slow(**changes: object) -> RolloutSpec:
    return spec().model_copy(update={"interval_s": SLOW, **changes})


def set_splits(model: str, *splits: tuple[str, int]):  # type: ignore[no-untyped-def]
    def mutate(state: DesiredState) -> DesiredState:
        new = ModelSpec(splits=[Split(backend=b, weight=w) for b, w in splits])
        return state.model_copy(update={"models": {**state.models, model: new}})

    return mutate


# --- starting -------------------------------------------------------------------------


async def test_start_refuses_what_it_cannot_roll_out(
    cp: ControlPlane, controller: RolloutController
) -> None:
    with pytest.raises(NotFoundError, match="model 'nope' does not exist"):
        await controller.start_rollout(slow(model="nope"), author="a")
    with pytest.raises(ConflictError, match="canary backend 'ghost' does not exist"):
        await controller.start_rollout(slow(canary="ghost"), author="a")
    with pytest.raises(InvalidStateError, match="must be a different backend") as same:
        await controller.start_rollout(slow(canary="stable"), author="a")
    assert same.value.field == "canary"
    await cp.apply(set_splits("tts", ("stable", 90), ("spare", 10)), author="a", message="ab")
    with pytest.raises(ConflictError, match="set it first") as split:
        await controller.start_rollout(slow(), author="a")
    assert "ttsgw models set-split tts stable=100" in split.value.message
    assert controller.find() == []  # nothing refused was recorded
    for bad in ([], [0, 50], [50, 25], [5, 5], [5, 101]):
        with pytest.raises(ValidationError, match="steps"):
            RolloutSpec(model="tts", canary="canary", steps=bad)


async def test_a_canary_parked_at_weight_0_may_start(
    cp: ControlPlane, controller: RolloutController
) -> None:
    await cp.apply(set_splits("tts", ("stable", 1), ("canary", 0)), author="a", message="park")
    rollout = await controller.start_rollout(slow(), author="a")
    assert rollout.stable == "stable" and weights(cp) == {"stable": 95, "canary": 5}


async def test_one_active_rollout_per_model(
    cp: ControlPlane, controller: RolloutController
) -> None:
    first = await controller.start_rollout(slow(), author="a")
    with pytest.raises(ConflictError, match=f"already has an active rollout: {first.id}"):
        await controller.start_rollout(slow(), author="b")
    # Another model is another matter.
    other = await controller.start_rollout(slow(model="other", canary="canary"), author="b")
    assert other.stable == "spare"
    await controller.pause(first.id, author="a")  # paused is still active
    with pytest.raises(ConflictError, match="already has an active rollout"):
        await controller.start_rollout(slow(), author="b")


# --- the guard ------------------------------------------------------------------------


async def test_the_guard_keeps_other_writers_off_the_model(
    cp: ControlPlane, controller: RolloutController
) -> None:
    rollout = await controller.start_rollout(slow(), author="a")
    head = cp.head.number

    with pytest.raises(
        ConflictError, match=re.escape("belong to rollout 1 (running, canary 'canary' at 5%)")
    ):
        await cp.apply(set_splits("tts", ("stable", 100)), author="admin", message="x")
    with pytest.raises(ConflictError, match="ttsgw rollout abort 1"):
        await cp.apply(set_splits("tts", ("stable", 100)), author="admin", message="x")

    def drop(kind: str, name: str):  # type: ignore[no-untyped-def]
        def mutate(state: DesiredState) -> DesiredState:
            items = dict(getattr(state, kind))
            del items[name]
            return state.model_copy(update={kind: items})

        return mutate

    with pytest.raises(ConflictError, match="model 'tts' is being rolled out by rollout 1"):
        await cp.apply(drop("models", "tts"), author="admin", message="x")
    # Guards run before the reference check, so this 409 is the rollout's, naming it.
    with pytest.raises(ConflictError, match="backend 'canary' is in use by rollout 1"):
        await cp.apply(drop("backends", "canary"), author="admin", message="x")
    # A rollout's author tag is not a pass for another rollout's model.
    with pytest.raises(ConflictError):
        await cp.apply(set_splits("tts", ("stable", 100)), author="rollout:2", message="x")
    assert cp.head.number == head  # nothing refused became a revision

    # Other models, and the model's other fields, are still anyone's.
    await cp.apply(set_splits("other", ("spare", 100), ("stable", 0)), author="admin", message="o")

    def slower(state: DesiredState) -> DesiredState:
        model = state.models["tts"].model_copy(update={"timeout_s": 120.0})
        return state.model_copy(update={"models": {**state.models, "tts": model}})

    await cp.apply(slower, author="admin", message="timeout")
    assert cp.head.state.models["tts"].timeout_s == 120.0

    await controller.abort(rollout.id, author="a")
    await cp.apply(set_splits("tts", ("stable", 100)), author="admin", message="after")
    assert weights(cp) == {"stable": 100}


# --- restarts -------------------------------------------------------------------------


async def test_a_restart_mid_interval_resumes_at_the_same_step(tmp_path: Path) -> None:
    """Control plane and rollouts both in one SQLite file, rebuilt from it as after a SIGKILL."""
    db = tmp_path / "revisions.db"
    cp1 = await control_plane(db)
    metrics = ScriptedMetrics()
    metrics.script("canary", HEALTHY)
    rc1 = RolloutController(cp1, metrics, SQLiteRolloutStore(db))
    cp1.add_guard(rc1.guard)
    await rc1.start()
    rollout = await rc1.start_rollout(spec().model_copy(update={"interval_s": 0.3}), author="a")
    await until(lambda: rc1.get(rollout.id).weight == 25, what="second step")
    await rc1.stop()  # what survives is only what the files hold
    before = rc1.get(rollout.id)
    cp1.store.close()
    rc1.store.close()

    cp2 = await control_plane(db)
    assert weights(cp2) == {"stable": 75, "canary": 25}
    thin = ScriptedMetrics()
    thin.script("canary", stats(requests=0))
    rc2 = RolloutController(cp2, thin, SQLiteRolloutStore(db))
    cp2.add_guard(rc2.guard)
    head = cp2.head.number
    await rc2.start()
    try:
        resumed = rc2.get(rollout.id)
        assert (resumed.status, resumed.step_index, resumed.weight) == ("running", 1, 25)
        assert resumed.next_check_at == before.next_check_at  # the same interval goes on
        assert cp2.head.number == head  # the splits already matched: no revision
        last = rc2.events(rollout.id)[-1]
        assert last.kind == "recovered" and "resuming at step 2/4 (25%)" in last.message
        with pytest.raises(ConflictError, match="rollout 1"):  # the guard is back too
            await cp2.apply(set_splits("tts", ("stable", 100)), author="admin", message="x")
        await until(lambda: rc2.get(rollout.id).checks > before.checks, what="a check")
        assert rc2.get(rollout.id).weight == 25  # thin traffic after the restart: held
        thin.script("canary", HEALTHY)
        await until(lambda: rc2.get(rollout.id).status == "promoted", what="promotion")
        assert weights(cp2) == {"canary": 100}
    finally:
        await rc2.aclose()
        cp2.store.close()


async def test_a_crash_between_revision_and_record_is_repaired(tmp_path: Path) -> None:
    """The revision for the next step was committed, the rollout row never heard of it."""
    cp = await control_plane()
    store = SQLiteRolloutStore(tmp_path / "r.db")
    rc1 = RolloutController(cp, ScriptedMetrics(), store)
    cp.add_guard(rc1.guard)
    rollout = await rc1.start_rollout(slow(), author="a")
    await cp.apply(
        set_splits("tts", ("stable", 75), ("canary", 25)), author="rollout:1", message=""
    )
    rc2 = RolloutController(cp, ScriptedMetrics(), store)
    await rc2.start()
    try:
        assert weights(cp) == {"stable": 95, "canary": 5}  # the recorded step wins
        last = rc2.events(rollout.id)[-1]
        assert last.kind == "recovered" and last.revision == cp.head.number
        assert cp.head.author == "rollout:1"
    finally:
        await rc2.aclose()


async def test_a_paused_rollout_stays_paused_across_a_restart(
    cp: ControlPlane, tmp_path: Path
) -> None:
    store = SQLiteRolloutStore(tmp_path / "r.db")
    rc1 = RolloutController(cp, ScriptedMetrics(), store)
    rollout = await rc1.start_rollout(slow(), author="a")
    await rc1.pause(rollout.id, author="a")
    metrics = ScriptedMetrics()
    metrics.script("canary", HEALTHY)
    rc2 = RolloutController(cp, metrics, store)
    await rc2.start()
    try:
        await asyncio.sleep(0.1)
        assert rc2.get(rollout.id).status == "paused" and metrics.calls == []
    finally:
        await rc2.aclose()


async def test_a_refused_first_step_is_reported_and_frees_the_model(
    cp: ControlPlane, controller: RolloutController
) -> None:
    refuse = True

    def no_rollout_writes(_: DesiredState, __: DesiredState, author: str) -> None:
        if refuse and author.startswith("rollout:"):
            raise ConflictError("change freeze")

    cp.add_guard(no_rollout_writes)
    with pytest.raises(ConflictError, match="change freeze"):
        await controller.start_rollout(slow(), author="a")
    failed = controller.get(1)
    assert failed.status == "failed" and "change freeze" in failed.message
    assert weights(cp) == {"stable": 100}
    refuse = False
    assert (await controller.start_rollout(slow(), author="a")).status == "running"
