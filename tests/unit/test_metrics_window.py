"""The fleet window: per-node flushes summed over a sliding window, stale and forgotten nodes."""

from __future__ import annotations

import pytest

from control_plane.metrics.flush import parse_flush
from control_plane.metrics.receiver import EnvoyMetricsSource
from control_plane.metrics.testing import Traffic, envoy_flush
from control_plane.metrics.window import FleetWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def flush(**clusters: Traffic):  # type: ignore[no-untyped-def]
    return parse_flush(envoy_flush(clusters))


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_sums_flushes_inside_the_window_only(clock: Clock) -> None:
    window = FleetWindow(clock=clock)
    for i in range(10):  # one flush every 2 s, 10 requests each, the last 5 with 2 errors
        window.record(
            "edge-1", flush(espeak=Traffic({"2xx": 10 - 2 * (i >= 5), "5xx": 2 * (i >= 5)}))
        )
        clock.now += 2
    # Flushes arrived at 0, 2, ..., 18 s; it is now 20 s: (10, 20] holds those at 12-18 s.
    stats = window.stats("espeak", 10.0)
    assert (stats.requests, stats.errors_5xx) == (40, 8)
    assert stats.success_rate == pytest.approx(0.8)
    everything = window.stats("espeak", 60.0)
    assert (everything.requests, everything.errors_5xx) == (100, 10)
    assert window.stats("other", 60.0).requests == 0
    assert window.stats("other", 60.0).success_rate is None


async def test_fleet_wide_is_the_sum_over_nodes_and_latency_merges(clock: Clock) -> None:
    window = FleetWindow(clock=clock)
    window.record("edge-1", flush(espeak=Traffic({"2xx": 99}, [8.0] * 99)))
    window.record("edge-2", flush(espeak=Traffic({"5xx": 1}, [4000.0])))
    clock.now += 1
    stats = await EnvoyMetricsSource(window).cluster_stats("espeak", 30)
    assert (stats.requests, stats.errors_5xx) == (100, 1)
    assert stats.p50_ms is not None and 5 < stats.p50_ms <= 10  # bucket (5, 10]
    assert stats.p99_ms is not None and stats.p99_ms <= 10
    window.record("edge-2", flush(espeak=Traffic({"5xx": 2}, [4000.0, 4000.0])))
    # 102 samples, 3 of them in (2500, 5000]: rank 100.98 sits 1.98/3 of the way through it.
    assert window.stats("espeak", 30).p99_ms == pytest.approx(2500 + 2500 * 1.98 / 3)


async def test_stale_nodes_still_count_until_they_age_out_then_are_forgotten(clock: Clock) -> None:
    window = FleetWindow(retention_s=60, stale_after_s=6, clock=clock)
    window.record("gone", flush(espeak=Traffic({"2xx": 5})))
    window.record("alive", flush(espeak=Traffic({"2xx": 1})))
    clock.now += 10
    window.record("alive", flush(espeak=Traffic({"2xx": 1})))
    reports = {r.node_id: r for r in window.nodes()}
    assert reports["gone"].stale and not reports["alive"].stale
    assert window.stats("espeak", 30).requests == 7  # the silent node's traffic happened
    clock.now += 55
    assert [r.node_id for r in window.nodes()] == ["alive"]
    assert window.stats("espeak", 60).requests == 1


def test_idle_clusters_are_not_stored(clock: Clock) -> None:
    window = FleetWindow(clock=clock)
    window.record("edge-1", flush(idle=Traffic({"2xx": 0}), busy=Traffic({"2xx": 3})))
    assert window.stats("idle", 10).requests == 0
    (stored,) = window._nodes["edge-1"].flushes
    assert set(stored[1]) == {"busy"}


def test_window_must_be_positive(clock: Clock) -> None:
    with pytest.raises(ValueError):
        FleetWindow(clock=clock).stats("x", 0)


def test_receiver_keeps_the_streams_node_and_counts_bad_flushes(clock: Clock) -> None:
    from prometheus_client import CollectorRegistry

    from control_plane.metrics.receiver import MetricsReceiver

    registry = CollectorRegistry()
    receiver = MetricsReceiver(FleetWindow(clock=clock), registry)
    node = receiver.receive(
        "ipv4:127.0.0.1:5555", envoy_flush({"a": Traffic({"2xx": 1})}, node_id="edge-9")
    )
    assert node == "edge-9"
    # Later flushes carry no identifier: the stream's node id goes on.
    assert receiver.receive(node, envoy_flush({"a": Traffic({"5xx": 1})})) == "edge-9"
    assert receiver.receive(node, b"\x12\x05ab") == "edge-9"
    assert registry.get_sample_value("ttsgw_metrics_flushes_total") == 2
    assert registry.get_sample_value("ttsgw_metrics_flush_errors_total") == 1
    stats = receiver.window.stats("a", 10)
    assert (stats.requests, stats.errors_5xx) == (2, 1)
    assert [r.node_id for r in receiver.window.nodes()] == ["edge-9"]
