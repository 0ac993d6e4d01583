"""A scripted MetricsSource for rollout tests: per cluster, one WindowStats (or error) per call.

Stands in for Envoy's metrics_service sink / Prometheus, which the e2e tests exercise;
here the controller's decisions are what is under test, so the figures are given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from control_plane.metrics.source import WindowStats

Item = WindowStats | BaseException | Callable[[], WindowStats]


def stats(requests: int = 100, errors: int = 0, p99_ms: float | None = 50.0) -> WindowStats:
    p50 = None if p99_ms is None else p99_ms / 5
    return WindowStats("", 0.0, requests, errors, p50_ms=p50, p95_ms=p99_ms, p99_ms=p99_ms)


HEALTHY = stats()


class ScriptedMetrics:
    """Hands out each cluster's script in order; the last item repeats forever."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Item]] = {}
        self.calls: list[tuple[str, float]] = []
        self.closed = False

    def script(self, cluster: str, *items: Item) -> None:
        self._scripts[cluster] = list(items)

    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats:
        self.calls.append((cluster, window_s))
        items = self._scripts.get(cluster) or [stats(requests=0)]
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, BaseException):
            raise item
        value = item() if callable(item) else item
        return dataclasses.replace(value, cluster=cluster, window_s=window_s)

    async def aclose(self) -> None:
        self.closed = True
