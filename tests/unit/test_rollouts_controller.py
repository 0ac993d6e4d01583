"""The rollout controller over the real ControlPlane (translator, snapshots, guards) with
scripted canary figures (tests/fakes/scripted_metrics.py) and a 50 ms interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.errors import ConflictError
from control_plane.metrics.source import WindowStats
from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.model import Rollout
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.service import ControlPlane
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.fakes.scripted_metrics import HEALTHY, ScriptedMetrics, stats
from tests.unit.rollouts_rig import INTERVAL, control_plane, spec, until, weights


@pytest.fixture
async def cp() -> ControlPlane:
    return await control_plane()


@pytest.fixture
def metrics() -> ScriptedMetrics:
    return ScriptedMetrics()


@pytest.fixture
async def controller(
    cp: ControlPlane, metrics: ScriptedMetrics, tmp_path: Path
) -> AsyncIterator[RolloutController]:
    rc = RolloutController(cp, metrics, SQLiteRolloutStore(tmp_path / "rollouts.db"))
    cp.add_guard(rc.guard)
    await rc.start()
    yield rc
    await rc.aclose()


def kinds(rc: RolloutController, rollout_id: int) -> list[str]:
    return [e.kind if e.verdict is None else e.verdict for e in rc.events(rollout_id)]


async def ended(rc: RolloutController, rollout_id: int, status: str) -> Rollout:
    await until(lambda: rc.get(rollout_id).status == status, what=f"rollout {status}")
    return rc.get(rollout_id)


async def test_a_healthy_canary_is_promoted_through_every_step(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    seen: list[dict[str, str]] = []

    def healthy_and_note_the_snapshot() -> object:
        seen.append(dict(cp.snapshot.versions))
        return HEALTHY

    metrics.script("canary", healthy_and_note_the_snapshot)  # type: ignore[arg-type]
    before = dict(cp.snapshot.versions)
    head = cp.head.number
    rollout = await controller.start_rollout(spec(), author="carol")
    assert (rollout.status, rollout.weight, rollout.stable) == ("running", 5, "stable")
    assert weights(cp) == {"stable": 95, "canary": 5}

    done = await ended(controller, rollout.id, "promoted")
    assert done.weight == 100 and done.checks == 4 and done.failed_checks == 0
    assert weights(cp) == {"canary": 100}  # the canary is the stable backend now
    assert done.last_figures is not None and done.last_figures["requests"] == 100
    assert kinds(controller, rollout.id) == [
        "started", "advanced", "pass", "advanced", "pass", "advanced", "pass", "advanced",
        "pass", "promoted",
    ]  # fmt: skip

    # One normal revision per weight change, authored by the rollout.
    revisions = cp.store.list(limit=10)[::-1][head:]
    assert [r.author for r in revisions] == ["rollout:1"] * 5
    splits = [r.state.models["tts"].splits for r in revisions]
    assert [{s.backend: s.weight for s in each} for each in splits] == [
        {"stable": 95, "canary": 5},
        {"stable": 75, "canary": 25},
        {"stable": 50, "canary": 50},
        {"stable": 0, "canary": 100},
        {"canary": 100},
    ]  # fmt: skip
    advanced = [e for e in controller.events(rollout.id) if e.kind in ("advanced", "promoted")]
    assert [e.revision for e in advanced] == [r.number for r in revisions]
    assert "'canary' 0% → 5% (first step)" in advanced[0].message
    assert "'canary' 5% → 25%" in advanced[1].message

    # Every step was a route-only push: clusters, endpoints and listeners never changed.
    for versions in [*seen, dict(cp.snapshot.versions)]:
        for kind in (CLUSTER, ENDPOINT, LISTENER):
            assert versions[kind] == before[kind]
    assert len({v[ROUTE] for v in seen}) == 4  # checked once at each of the four weights
    # Each check read exactly one interval of the canary's traffic.
    assert set(metrics.calls) == {("canary", INTERVAL)}


async def test_twenty_percent_5xx_is_rolled_back_within_two_intervals(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    bad = stats(requests=100, errors=20)
    metrics.script("canary", HEALTHY, bad)  # turns bad once at 25%
    rollout = await controller.start_rollout(spec(max_failed_checks=1), author="carol")
    done = await ended(controller, rollout.id, "rolled_back")
    events = controller.events(rollout.id)
    assert [e.kind if e.verdict is None else e.verdict for e in events][-5:] == [
        "pass", "advanced", "fail", "fail", "rolled_back",
    ]  # fmt: skip
    # Two intervals after the step to 25%, the canary is at 0% again (slack for a busy CI).
    assert events[-1].at - events[-4].at < 2 * INTERVAL + 0.5
    checks = [e for e in controller.events(rollout.id) if e.kind == "check"]
    assert [c.verdict for c in checks] == ["pass", "fail", "fail"]
    assert checks[1].figures is not None and checks[1].figures["errors_5xx"] == 20
    assert "success rate 80.00% below 99.00%" in checks[1].message
    assert "failed check 1 of 1 tolerated" in checks[1].message
    assert (done.weight, done.failed_checks, done.finished_at is not None) == (0, 2, True)
    assert weights(cp) == {"stable": 100, "canary": 0}
    last = controller.events(rollout.id)[-1]
    assert last.kind == "rolled_back" and last.revision == cp.head.number
    assert cp.head.author == "rollout:1"


async def test_zero_tolerance_rolls_back_on_the_first_failed_check(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", stats(requests=100, errors=20))
    rollout = await controller.start_rollout(spec(max_failed_checks=0), author="carol")
    done = await ended(controller, rollout.id, "rolled_back")
    assert done.checks == 1 and weights(cp)["canary"] == 0


async def test_a_p99_over_the_gate_is_rolled_back(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", stats(requests=100, p99_ms=900))
    rollout = await controller.start_rollout(
        spec(max_p99_ms=500, max_failed_checks=0), author="carol"
    )
    done = await ended(controller, rollout.id, "rolled_back")
    assert "p99 900 ms above 500 ms" in done.message
    assert weights(cp) == {"stable": 100, "canary": 0}


async def test_thin_traffic_holds_without_failing_then_advances(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    thin = stats(requests=3)
    metrics.script("canary", thin, thin, thin, thin, HEALTHY)
    rollout = await controller.start_rollout(spec(max_failed_checks=0), author="carol")
    await until(lambda: controller.get(rollout.id).weight == 25, what="advance after thin")
    checks = [e for e in controller.events(rollout.id) if e.kind == "check"]
    assert [c.verdict for c in checks[:4]] == ["thin"] * 4
    assert all(c.weight == 5 for c in checks[:4])  # held at the first step
    assert "only 3 canary request(s)" in checks[0].message
    assert controller.get(rollout.id).failed_checks == 0


async def test_a_latency_gate_without_latency_figures_holds(
    metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", stats(requests=100, p99_ms=None))
    rollout = await controller.start_rollout(spec(max_p99_ms=500), author="carol")
    await until(lambda: controller.get(rollout.id).checks >= 3)
    held = controller.get(rollout.id)
    assert (held.status, held.weight, held.last_verdict) == ("running", 5, "thin")


async def test_metrics_errors_are_events_and_holds_never_a_crash(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", RuntimeError("prometheus down"), ValueError("garbled"), HEALTHY)
    rollout = await controller.start_rollout(spec(max_failed_checks=0), author="carol")
    await ended(controller, rollout.id, "promoted")
    checks = [e for e in controller.events(rollout.id) if e.kind == "check"]
    assert [c.verdict for c in checks[:3]] == ["error", "error", "pass"]
    assert "RuntimeError: prometheus down" in checks[0].message
    assert controller.get(rollout.id).failed_checks == 0


async def test_pause_holds_resume_continues_promote_finishes(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", HEALTHY)
    rollout = await controller.start_rollout(spec(), author="carol")
    paused = await controller.pause(rollout.id, author="dave")
    assert (paused.status, paused.next_check_at) == ("paused", None)
    assert await controller.pause(rollout.id, author="dave") == paused  # idempotent
    calls = len(metrics.calls)
    await asyncio.sleep(6 * INTERVAL)
    assert len(metrics.calls) == calls and controller.get(rollout.id).weight == 5

    resumed = await controller.resume(rollout.id, author="dave")
    assert resumed.status == "running"
    await until(lambda: controller.get(rollout.id).weight >= 25, what="advance after resume")
    promoted = await controller.promote(rollout.id, author="erin")
    assert promoted.status == "promoted" and weights(cp) == {"canary": 100}
    events = controller.events(rollout.id)
    assert [e.author for e in events if e.kind in ("paused", "resumed", "promoted")] == [
        "dave",
        "dave",
        "erin",
    ]
    with pytest.raises(ConflictError, match="promoted; it cannot be aborted"):
        await controller.abort(rollout.id, author="erin")


async def test_abort_sends_everything_back_to_stable(
    cp: ControlPlane, metrics: ScriptedMetrics, controller: RolloutController
) -> None:
    metrics.script("canary", stats(requests=0))
    rollout = await controller.start_rollout(spec(), author="carol")
    aborted = await controller.abort(rollout.id, author="dave")
    assert (aborted.status, aborted.weight) == ("aborted", 0)
    assert weights(cp) == {"stable": 100, "canary": 0}
    assert "aborted by dave" in cp.head.message
    # The model is free again: admin writes pass and a new rollout may start.
    await cp.apply(lambda s: s, author="admin", message="noop")
    again = await controller.start_rollout(spec(), author="carol")
    assert again.id == rollout.id + 1 and weights(cp) == {"stable": 95, "canary": 5}


class HangingMetrics(ScriptedMetrics):
    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats:
        self.calls.append((cluster, window_s))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hanging_metrics_source_is_a_timeout_event_not_a_stuck_loop(
    cp: ControlPlane, tmp_path: Path
) -> None:
    rc = RolloutController(cp, HangingMetrics(), SQLiteRolloutStore(tmp_path / "r.db"))
    await rc.start()
    try:
        rollout = await rc.start_rollout(spec(), author="carol")
        await until(lambda: rc.get(rollout.id).checks >= 1, timeout=5)
        held = rc.get(rollout.id)
        assert (held.status, held.weight, held.last_verdict) == ("running", 5, "error")
        assert "metrics unavailable (no answer in 1s)" in held.message
    finally:
        await rc.aclose()
