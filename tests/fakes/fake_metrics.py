"""A MetricsSource whose figures a test sets, for the API and rollout logic without Envoy."""

from __future__ import annotations

from control_plane.metrics.source import WindowStats


class FakeMetricsSource:
    def __init__(self) -> None:
        self.figures: dict[str, WindowStats] = {}
        self.calls: list[tuple[str, float]] = []
        self.closed = False

    def set(
        self, cluster: str, requests: int, errors_5xx: int = 0, p99_ms: float | None = None
    ) -> None:
        self.figures[cluster] = WindowStats(
            cluster, 0.0, requests, errors_5xx, p50_ms=p99_ms, p95_ms=p99_ms, p99_ms=p99_ms
        )

    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats:
        self.calls.append((cluster, window_s))
        got = self.figures.get(cluster, WindowStats(cluster, window_s, 0, 0))
        return WindowStats(
            cluster, window_s, got.requests, got.errors_5xx, got.p50_ms, got.p95_ms, got.p99_ms
        )

    async def aclose(self) -> None:
        self.closed = True
