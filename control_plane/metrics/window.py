"""Each Envoy's recent flushes, summed over a sliding window per cluster and across the fleet."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.metrics.flush import ClusterDelta, Flush
from control_plane.metrics.histogram import Histogram, merge, quantile
from control_plane.metrics.source import WindowStats


@dataclass
class _Node:
    last_seen: float
    flushes: deque[tuple[float, dict[str, ClusterDelta]]]


@dataclass(frozen=True)
class NodeReport:
    node_id: str
    last_seen_s_ago: float
    flushes: int
    stale: bool


class FleetWindow:
    """Flushes by node, each stamped with the control plane's clock when it arrived.

    Envoy sends counters as deltas and histograms per interval, so a window's traffic is the
    sum of the flushes that arrived inside it; fleet-wide is the sum over nodes. Arrival time
    (not Envoy's timestamp) keeps skewed clocks on the fleet out of the arithmetic. Flushes
    older than `retention_s` are dropped, and a node silent that long is forgotten; one silent
    for `stale_after_s` is reported stale (its flushes still count until they age out: that
    traffic happened).
    """

    def __init__(
        self,
        *,
        retention_s: float = 900.0,
        stale_after_s: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retention_s = retention_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._nodes: dict[str, _Node] = {}

    def record(self, node_id: str, flush: Flush) -> None:
        now = self._clock()
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(now, deque())
        node.last_seen = now
        # An idle cluster repeats zeros every flush; storing them would only cost memory.
        active = {name: d for name, d in flush.clusters.items() if not d.empty}
        node.flushes.append((now, active))
        self._expire(now)

    def stats(self, cluster: str, window_s: float) -> WindowStats:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        now = self._clock()
        self._expire(now)
        since = now - window_s
        requests = errors = 0
        latencies: list[Histogram] = []
        for node in self._nodes.values():
            for arrived, clusters in reversed(node.flushes):
                if arrived <= since:
                    break
                delta = clusters.get(cluster)
                if delta is None:
                    continue
                requests += delta.requests
                errors += delta.errors_5xx
                if delta.latency.count:
                    latencies.append(delta.latency)
        latency = merge(latencies)
        return WindowStats(
            cluster=cluster,
            window_s=window_s,
            requests=requests,
            errors_5xx=errors,
            p50_ms=quantile(latency, 0.50),
            p95_ms=quantile(latency, 0.95),
            p99_ms=quantile(latency, 0.99),
        )

    def nodes(self) -> list[NodeReport]:
        now = self._clock()
        self._expire(now)
        return [
            NodeReport(
                node_id,
                now - node.last_seen,
                len(node.flushes),
                stale=now - node.last_seen > self.stale_after_s,
            )
            for node_id, node in sorted(self._nodes.items())
        ]

    def _expire(self, now: float) -> None:
        horizon = now - self.retention_s
        for node_id in list(self._nodes):
            node = self._nodes[node_id]
            while node.flushes and node.flushes[0][0] <= horizon:
                node.flushes.popleft()
            if node.last_seen <= horizon:
                del self._nodes[node_id]
