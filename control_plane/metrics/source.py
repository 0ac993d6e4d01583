"""The metrics-source interface that rollouts and the stats endpoints read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WindowStats:
    """One backend's (Envoy cluster's) traffic over the last `window_s`, fleet-wide."""

    cluster: str
    window_s: float
    requests: int
    errors_5xx: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        """Share of requests that were not 5xx; None without traffic."""
        if self.requests <= 0:
            return None
        return 1.0 - self.errors_5xx / self.requests

    def public(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "window_s": self.window_s,
            "requests": self.requests,
            "errors_5xx": self.errors_5xx,
            "success_rate": self.success_rate,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


class MetricsSource(Protocol):
    """Envoy's own numbers per cluster: the metrics_service sink, or Prometheus."""

    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats: ...

    async def aclose(self) -> None: ...
