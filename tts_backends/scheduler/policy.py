"""SchedulerPolicy: queue limits, timeouts, aging and batching knobs of one worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from .levels import LEVELS


def _per_level(high: float, default: float, low: float) -> dict[str, float]:
    return {"high": high, "default": default, "low": low}


@dataclass(frozen=True)
class SchedulerPolicy:
    # Continuous batching: at most this many requests in one engine step.
    max_batch_size: int = 16
    # An idle batcher waits this long after the first arrival for others to join its batch.
    max_wait_s: float = 0.005
    # Requests working at once on an engine that cannot batch (espeak, cosyvoice3).
    concurrency: int = 1
    # Per-level queue limits and queue timeouts, in the style of Triton's
    # priority_queue_policy; low has the shortest timeout, so it is shed first.
    queue_limits: dict[str, int] = field(
        default_factory=lambda: {"high": 64, "default": 256, "low": 256}
    )
    queue_timeouts_s: dict[str, float] = field(default_factory=lambda: _per_level(30, 20, 10))
    # All levels together; when full, an arrival evicts the newest request of a lower level.
    max_queue_depth: int = 512
    # Every `aging_s` of waiting raises a request one level, so low cannot starve.
    aging_s: float = 5.0
    # While a high-level request is in flight, lower levels keep at most this many batch
    # rows (the rest pause, keeping their state; aging still lifts them). 0 by default:
    # on CPU every extra row slows the step, and with 3 high's latency under a 2x low
    # flood was 1.8x idle against 1.1x with 0 (benchmarks/priority.py).
    rows_beside_high: int = 0
    # Completions counted for the drain rate behind Retry-After and the wait estimate.
    drain_window_s: float = 10.0

    def __post_init__(self) -> None:
        for name, table in (
            ("queue_limits", self.queue_limits),
            ("queue_timeouts_s", self.queue_timeouts_s),
        ):
            missing = [level for level in LEVELS if level not in table]
            if missing:
                raise ValueError(f"{name} lacks levels {missing}")
        if self.max_batch_size < 1 or self.concurrency < 1:
            raise ValueError("max_batch_size and concurrency must be at least 1")
