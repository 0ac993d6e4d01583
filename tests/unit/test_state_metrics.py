"""The control plane's scrape-time gauges: route weights, rollout state, connected Envoys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.service import ControlPlane
from control_plane.state_metrics import ROLLOUT_STATES, control_plane_collector
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.metrics import XdsMetrics
from control_plane.xds.resources import ROUTE
from tests.fakes.scripted_metrics import ScriptedMetrics
from tests.unit.rollouts_rig import control_plane, spec


@pytest.fixture
async def cp() -> ControlPlane:
    return await control_plane()


@pytest.fixture
async def controller(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[RolloutController]:
    # Not started: the rollout stays on its first step, which is what the gauges show.
    rc = RolloutController(cp, ScriptedMetrics(), SQLiteRolloutStore(tmp_path / "r.db"))
    cp.add_guard(rc.guard)
    yield rc
    await rc.aclose()


def registry_for(cp: ControlPlane, rc: RolloutController | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(control_plane_collector(cp, rc))
    return registry


async def test_route_weights_follow_the_head_desired_state(cp: ControlPlane) -> None:
    registry = registry_for(cp)
    value = registry.get_sample_value
    assert value("ttsgw_route_weight", {"model": "tts", "backend": "stable"}) == 100
    assert value("ttsgw_route_weight", {"model": "other", "backend": "spare"}) == 100
    assert value("ttsgw_route_weight", {"model": "tts", "backend": "canary"}) is None
    assert value("ttsgw_xds_connected_envoys") == 0
    assert "ttsgw_rollout_state" in generate_latest(registry).decode()  # declared, empty


async def test_a_rollout_shows_its_state_and_the_weights_it_wrote(
    cp: ControlPlane, controller: RolloutController
) -> None:
    registry = registry_for(cp, controller)
    rollout = await controller.start_rollout(spec(), author="admin")
    labels = {"model": "tts", "rollout": str(rollout.id), "canary": "canary"}
    value = registry.get_sample_value
    states = {s: value("ttsgw_rollout_state", {**labels, "state": s}) for s in ROLLOUT_STATES}
    assert states == {s: (1.0 if s == rollout.status else 0.0) for s in ROLLOUT_STATES}
    assert rollout.status == "running"
    assert value("ttsgw_rollout_canary_weight_percent", labels) == 5
    # The first step is a revision: 95/5 in the desired state, read at scrape time.
    assert value("ttsgw_route_weight", {"model": "tts", "backend": "stable"}) == 95
    assert value("ttsgw_route_weight", {"model": "tts", "backend": "canary"}) == 5

    await controller.abort(rollout.id, author="admin")
    assert value("ttsgw_rollout_state", {**labels, "state": "aborted"}) == 1
    assert value("ttsgw_rollout_state", {**labels, "state": "running"}) == 0
    assert value("ttsgw_route_weight", {"model": "tts", "backend": "canary"}) in (None, 0)


async def test_a_broken_rollout_store_costs_only_the_rollout_series(cp: ControlPlane) -> None:
    def broken(**_: object) -> list[object]:
        raise RuntimeError("database is locked")

    class Broken:
        find = staticmethod(broken)

    registry = registry_for(cp, Broken())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'ttsgw_route_weight{backend="stable",model="tts"} 100.0' in text
    assert "ttsgw_rollout_state{" not in text


async def test_push_latency_is_measured_from_the_snapshots_publication(cp: ControlPlane) -> None:
    registry = CollectorRegistry()
    metrics = XdsMetrics(registry)
    cache = SnapshotCache()
    snapshot = cp.snapshot
    cache.set_snapshot(snapshot)
    published = cache.published_at(snapshot.version)
    assert published is not None
    assert cache.published_at("some-older-version") is None

    metrics.on_response_written(ROUTE, published)
    metrics.on_response_written(ROUTE, None)  # a superseded snapshot's push: nothing to time
    count = registry.get_sample_value("ttsgw_xds_push_latency_seconds_count", {"type": "rds"})
    assert count == 1
    total = registry.get_sample_value("ttsgw_xds_push_latency_seconds_sum", {"type": "rds"})
    assert total is not None and 0 <= total < 5
    # Every type is declared from the start, so the first NACK is a visible increase.
    assert registry.get_sample_value("ttsgw_xds_nacks_total", {"type": "cds"}) == 0
