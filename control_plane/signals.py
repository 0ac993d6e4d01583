"""A broadcast change signal: wake every waiter on each change; each re-checks its own condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ChangeSignal:
    """Cheaper than per-waiter queues: one Event per change, swapped for a fresh one."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        fired, self._event = self._event, asyncio.Event()
        fired.set()

    async def wait(self) -> None:
        await self._event.wait()

    async def wait_until(self, ready: Callable[[], bool], timeout: float) -> float | None:
        """Seconds until ``ready()`` holds, re-checked after every change; None on timeout."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return None
        return loop.time() - start
