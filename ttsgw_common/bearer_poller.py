"""An httpx client that sends a bearer token, and the background task that polls with it.

Every poller of an internal peer (the filter's gateway-config long-poll and queue view,
the control plane's worker-queue poller) builds its client and its loop task here, so the
timeouts, the token header and the cancel-on-close are written once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import httpx


def bearer_client(
    base_url: str = "",
    *,
    token: str | None = None,
    timeout: httpx.Timeout | float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A pooled client for one peer; no token sends no Authorization header."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=timeout,
        transport=transport,
        # The peers are internal; a proxy from the environment would only add a hop that
        # can fail.
        trust_env=False,
    )


class PollTask:
    """One background loop, started at most once and cancelled (and awaited) on close."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(loop(), name=self._name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
