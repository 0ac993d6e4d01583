"""Where the filter reads how busy the service is: the control plane's queue aggregate, cached.

    GET {control_plane_url}/api/v1/queue
    Authorization: Bearer <dataplane token>   (read-only; ttsgw_contract/roles.py)

    200 QueueAggregate (ttsgw_contract/queue_status.py)

One answer serves every caller for ``ttl_s`` (about a second, the control plane's own
poll interval), and concurrent callers share one request, so a flood of ``/v1/queue``
calls costs the control plane one request per second per filter. A failure is cached
for the same time, so a control plane that is down is not hammered either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import httpx
from pydantic import ValidationError

from gateway.errors import QueueStatusUnavailableError
from ttsgw_common.bearer_poller import bearer_client
from ttsgw_contract.queue_status import QueueAggregate

QUEUE_PATH = "/api/v1/queue"


class QueueStatusSource(Protocol):
    async def aggregate(self) -> QueueAggregate:
        """The control plane's aggregate; raises QueueStatusUnavailableError when it has none."""
        ...

    async def aclose(self) -> None: ...


class HttpQueueStatusSource:
    """Fetches the aggregate at most once per ``ttl_s``, with single-flight."""

    def __init__(
        self,
        control_plane_url: str,
        *,
        token: str | None = None,
        ttl_s: float = 1.0,
        timeout_s: float = 0.3,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The filter answers inside Envoy's 500 ms message timeout, so a slow control
        # plane must fail fast rather than push the whole answer past it.
        self._client = bearer_client(
            control_plane_url, token=token, timeout=timeout_s, transport=transport
        )
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._fetched_at: float | None = None
        # The last answer, or the message of the last failure (a fresh error per caller).
        self._result: QueueAggregate | str | None = None
        self._inflight: asyncio.Task[QueueAggregate | str] | None = None
        self.requests = 0  # made to the control plane; read by tests and nothing else

    async def aggregate(self) -> QueueAggregate:
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self._ttl_s
        if not fresh or self._result is None:
            if self._inflight is None:
                self._inflight = asyncio.create_task(self._fetch())
                self._inflight.add_done_callback(self._store)
            # Shielded: one caller going away (client disconnect) must not cancel the
            # request the others wait on.
            result = await asyncio.shield(self._inflight)
        else:
            result = self._result
        if isinstance(result, str):
            raise QueueStatusUnavailableError(result)
        return result

    def _store(self, task: asyncio.Task[QueueAggregate | str]) -> None:
        self._inflight = None
        if task.cancelled():
            return
        self._result, self._fetched_at = task.result(), self._clock()

    async def _fetch(self) -> QueueAggregate | str:
        self.requests += 1
        try:
            # httpx's timeout is per phase (connect, write, read); this caps the total.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.get(QUEUE_PATH)
        except TimeoutError:
            return "Queue status is unavailable: the control plane did not answer (timed out)."
        except httpx.HTTPError as exc:
            return (
                f"Queue status is unavailable: the control plane did not answer ({_reason(exc)})."
            )
        if response.status_code != 200:
            return (
                "Queue status is unavailable: the control plane answered HTTP "
                f"{response.status_code}."
            )
        try:
            return QueueAggregate.model_validate_json(response.content)
        except ValidationError:
            return "Queue status is unavailable: the control plane sent an unexpected answer."

    async def aclose(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
        await self._client.aclose()


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
