"""Latency histograms as Envoy sends them: cumulative bucket counts, merged, read as quantiles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per bucket upper bound (ms); samples above the last bound are overflow."""

    bounds: tuple[float, ...] = ()
    cumulative: tuple[int, ...] = ()
    count: int = 0

    def per_bucket(self) -> dict[float, int]:
        out: dict[float, int] = {}
        previous = 0
        for bound, cumulative in zip(self.bounds, self.cumulative, strict=True):
            out[bound] = cumulative - previous
            previous = cumulative
        return out


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """Sum histograms, fleet-wide or over time.

    Buckets are summed by upper bound, so Envoys with different bucket layouts still merge:
    each sample stays at its own bucket's bound. Overflow samples stay overflow.
    """
    per_bound: dict[float, int] = {}
    count = 0
    for h in histograms:
        count += h.count
        for bound, n in h.per_bucket().items():
            per_bound[bound] = per_bound.get(bound, 0) + n
    bounds = tuple(sorted(per_bound))
    cumulative: list[int] = []
    running = 0
    for bound in bounds:
        running += per_bound[bound]
        cumulative.append(running)
    return Histogram(bounds, tuple(cumulative), count)


def quantile(h: Histogram, q: float) -> float | None:
    """The q-quantile in ms, interpolated linearly inside its bucket as Prometheus'
    `histogram_quantile` does, so both metrics sources agree; None without samples.

    A quantile that falls among the overflow samples answers the last bound: a lower bound
    of the truth, as in Prometheus.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    total = max(h.count, h.cumulative[-1] if h.cumulative else 0)
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, cumulative in zip(h.bounds, h.cumulative, strict=True):
        if cumulative >= rank and cumulative > lower_count:
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                cumulative - lower_count
            )
        lower_bound, lower_count = bound, cumulative
    return h.bounds[-1] if h.bounds else None
