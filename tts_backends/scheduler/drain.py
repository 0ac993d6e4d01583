"""DrainRate: how fast the worker finishes requests, for Retry-After and wait estimates."""

from __future__ import annotations

import math
from collections import deque

# Clamp Retry-After: at least 1 s (HTTP's unit), and never so long a client gives up.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60
# Completions needed before the rate is trusted to refuse a request on its expected wait:
# one or two completions after a quiet spell say little about how fast the queue drains.
MIN_SAMPLES_TO_SHED = 5


class DrainRate:
    """Completions per second over a sliding window; None until something has completed."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._done: deque[float] = deque()

    def record(self, now: float) -> None:
        self._done.append(now)
        self._trim(now)

    def confident(self, now: float) -> bool:
        self._trim(now)
        return len(self._done) >= MIN_SAMPLES_TO_SHED

    def rate(self, now: float) -> float | None:
        self._trim(now)
        if not self._done:
            return None
        # Over the window, or since the first completion in it when the worker just started.
        span = max(now - self._done[0], 1.0) if len(self._done) > 1 else self.window_s
        return len(self._done) / min(span, self.window_s)

    def wait_s(self, ahead: int, now: float) -> float | None:
        """Expected seconds until `ahead` queued requests have drained."""
        rate = self.rate(now)
        return None if rate is None else ahead / rate

    def retry_after_s(self, ahead: int, now: float) -> int:
        wait = self.wait_s(ahead, now)
        if wait is None:
            return MIN_RETRY_AFTER_S
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, math.ceil(wait)))

    def _trim(self, now: float) -> None:
        while self._done and now - self._done[0] > self.window_s:
            self._done.popleft()
