"""In-process single-flight: concurrent misses on one key cost one backend request, not N.

The first ``join`` of a key leads: it asks the backend and later calls ``finish`` with the
response (or None when it failed or its stream went away). Every ``join`` of the same key
until then follows and ``wait``s for that value, falling back to the backend itself on
None. A leader that never finishes would make followers wait their whole timeout, so:

- ``finish`` is idempotent (the first call wins), so ``finally: flight.finish(None)`` is
  always safe after a successful ``finish(value)``;
- a ``Flight`` is a context manager that finishes with None on exit;
- a flight older than ``stale_after_s`` is replaced by the next ``join``, so one leaked
  leader cannot hold a key forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from ttsgw_contract.cache import CachedResponse


class _Call:
    __slots__ = ("done", "started", "value")

    def __init__(self, started: float) -> None:
        self.started = started
        self.done = asyncio.Event()
        self.value: CachedResponse | None = None


class Flight:
    """One request's part in a flight: ``leader`` fetches and finishes, followers wait."""

    def __init__(self, owner: SingleFlight, key: str, call: _Call, *, leader: bool) -> None:
        self._owner = owner
        self._call = call
        self.key = key
        self.leader = leader

    @property
    def done(self) -> bool:
        return self._call.done.is_set()

    def finish(self, value: CachedResponse | None) -> None:
        """Leader only: hand ``value`` (None = failed) to the followers; later calls no-op."""
        if not self.leader:
            raise RuntimeError("only the leader of a flight may finish it")
        if self._call.done.is_set():
            return
        self._call.value = value
        self._call.done.set()
        self._owner._forget(self.key, self._call)

    async def wait(self, timeout_s: float) -> CachedResponse | None:
        """Follower only: the leader's value, or None on leader failure or timeout."""
        if self.leader:
            raise RuntimeError("the leader of a flight has nobody to wait for")
        if not self._call.done.is_set():
            try:
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    await self._call.done.wait()
            except TimeoutError:
                return None
        return self._call.value

    def __enter__(self) -> Flight:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.leader:
            self.finish(None)


class SingleFlight:
    """The open flights of one filter process, by cache key."""

    def __init__(
        self, *, stale_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._calls: dict[str, _Call] = {}

    def join(self, key: str) -> Flight:
        now = self._clock()
        call = self._calls.get(key)
        if call is not None and now - call.started < self._stale_after_s:
            return Flight(self, key, call, leader=False)
        # No flight, or a stale one whose leader leaked: its followers have long timed
        # out, and this request leads a fresh flight.
        call = _Call(now)
        self._calls[key] = call
        return Flight(self, key, call, leader=True)

    def in_flight(self) -> int:
        """How many keys have a leader fetching right now."""
        return len(self._calls)

    def abandon_all(self) -> None:
        """Finish every open flight with None (shutdown): followers go to the backend."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.done.set()

    def _forget(self, key: str, call: _Call) -> None:
        # Only this flight's own entry: a stale flight finishing late must not drop the
        # fresh flight that replaced it.
        if self._calls.get(key) is call:
            del self._calls[key]
