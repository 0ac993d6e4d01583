"""How busy the service is: every worker's /v1/queue, polled, and summed per public model.

The `QueuePoller` asks every endpoint of every backend in the head revision for its
scheduler status (``GET /v1/queue``, see ``tts_backends/scheduler/scheduler.py``) about
once a second, concurrently and with a short timeout. It keeps each endpoint's last
answer with its age; an endpoint that fails is ``unreachable`` with the error on one
line, and its old answer no longer counts in any sum (a dead worker drains nothing).

`aggregate_model` is the pure arithmetic, per model over the backends its splits name
with a weight above 0:

- per level: summed ``depth`` and ``limit``, ``fill = depth / limit``, and an
  ``estimated_wait_s`` = requests queued at that level or above / the summed drain rate
  (0.0 when nothing is queued ahead; None while no endpoint knows its drain rate). The
  estimate pools the backends, as if the weights followed the capacity.
- ``in_flight``, ``queued`` and ``drain_rate_per_s`` summed.
- ``busy``: ``unknown`` (no endpoint answered), ``overloaded`` (a level is at least 80%
  full, or its estimated wait reaches its queue timeout, so new requests there would be
  shed or time out), ``busy`` (anything queued or in flight), else ``idle``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from control_plane.domain import DesiredState, ModelSpec
from ttsgw_common.bearer_poller import PollTask, bearer_client
from ttsgw_contract.queue_status import (
    LEVELS,
    BackendQueue,
    Busy,
    EndpointCounts,
    EndpointQueue,
    LevelQueue,
    ModelQueue,
    QueueAggregate,
)

log = logging.getLogger(__name__)

QUEUE_PATH = "/v1/queue"
# A level this full (summed depth / summed limit) is one burst away from shedding.
OVERLOADED_FILL = 0.8
# Polls in flight at once: a thousand endpoints must not open a thousand sockets at once.
MAX_CONCURRENT_POLLS = 64


class QueueFetcher(Protocol):
    """Reads one worker's /v1/queue; raises any Exception when it cannot."""

    async def fetch(self, host: str, port: int) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class HttpQueueFetcher:
    """The real fetcher: one pooled httpx client, a short timeout for every poll."""

    def __init__(
        self, *, timeout_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        # Workers are the control plane's own peers and take no token.
        self._client = bearer_client(timeout=timeout_s, transport=transport)

    async def fetch(self, host: str, port: int) -> dict[str, Any]:
        host = f"[{host}]" if ":" in host else host
        response = await self._client.get(f"http://{host}:{port}{QUEUE_PATH}")
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("levels"), dict):
            raise ValueError("not a /v1/queue answer (no 'levels' object)")
        return body

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True)
class EndpointReading:
    """What the poller knows about one worker address."""

    address: str
    # The last good answer and when it came (monotonic seconds); kept through failures.
    status: dict[str, Any] | None = None
    fetched_at: float | None = None
    # Set while the latest poll failed: the endpoint is unreachable.
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None and self.status is not None

    def public(self, now: float) -> EndpointQueue:
        age = None if self.fetched_at is None else round(max(0.0, now - self.fetched_at), 3)
        return EndpointQueue(
            address=self.address,
            state="ok" if self.reachable else "unreachable",
            error=self.error,
            age_s=age,
            queue=self.status,
        )


def address_of(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _level_of(status: dict[str, Any], level: str) -> dict[str, Any]:
    entry = status.get("levels", {}).get(level)
    return entry if isinstance(entry, dict) else {}


def aggregate_readings(readings: Iterable[EndpointReading]) -> ModelQueue:
    """Sum the reachable readings into one view (levels, in-flight, drain rate, busy)."""
    live = [r.status for r in readings if r.reachable and r.status is not None]
    drain = [d for d in (_number(s.get("drain_rate_per_s")) for s in live) if d is not None]
    rate = sum(drain) if drain else None
    in_flight = sum(int(_number(s.get("in_flight")) or 0) for s in live)
    levels: dict[str, LevelQueue] = {}
    ahead = 0
    for level in LEVELS:
        parts = [_level_of(s, level) for s in live]
        depth = sum(int(_number(p.get("depth")) or 0) for p in parts)
        limit = sum(int(_number(p.get("limit")) or 0) for p in parts)
        timeouts = [t for t in (_number(p.get("timeout_s")) for p in parts) if t is not None]
        ahead += depth  # a new arrival waits behind its own level and every higher one
        if ahead == 0:
            wait: float | None = 0.0
        elif rate:
            wait = round(ahead / rate, 3)
        else:
            wait = None
        levels[level] = LevelQueue(
            depth=depth,
            limit=limit,
            fill=round(depth / limit, 3) if limit else None,
            timeout_s=min(timeouts) if timeouts else None,
            oldest_wait_s=max((_number(p.get("oldest_wait_s")) or 0.0 for p in parts), default=0.0),
            estimated_wait_s=wait,
        )
    queued = sum(lv.depth for lv in levels.values())
    return ModelQueue(
        busy=_busy(bool(live), levels, queued, in_flight),
        queued=queued,
        in_flight=in_flight,
        drain_rate_per_s=None if rate is None else round(rate, 3),
        levels=levels,
    )


def _busy(answered: bool, levels: dict[str, LevelQueue], queued: int, in_flight: int) -> Busy:
    if not answered:
        return "unknown"
    for level in levels.values():
        if level.fill is not None and level.fill >= OVERLOADED_FILL:
            return "overloaded"
        wait, timeout = level.estimated_wait_s, level.timeout_s
        if level.depth and wait is not None and timeout is not None and wait >= timeout:
            return "overloaded"
    return "busy" if queued or in_flight else "idle"


def aggregate_model(
    model: ModelSpec,
    state: DesiredState,
    readings: dict[str, EndpointReading],
    now: float,
) -> ModelQueue:
    """One model's view: sums over its live splits, plus every split's endpoints in detail."""
    backends = []
    counted: dict[str, EndpointReading] = {}
    for split in model.splits:
        spec = state.backends.get(split.backend)
        endpoints = [] if spec is None else spec.endpoints
        details = []
        for endpoint in endpoints:
            address = address_of(endpoint.host, endpoint.port)
            reading = readings.get(address, EndpointReading(address, error="not polled yet"))
            details.append(reading.public(now))
            if split.weight > 0:
                # Keyed by address: two backends on one worker must not count it twice.
                counted[address] = reading
        backends.append(BackendQueue(name=split.backend, weight=split.weight, endpoints=details))
    counts = EndpointCounts(
        total=len(counted), reachable=sum(1 for r in counted.values() if r.reachable)
    )
    return aggregate_readings(counted.values()).model_copy(
        update={"endpoints": counts, "backends": backends}
    )


class QueuePoller:
    """Polls every worker of the current desired state; `view()` is cheap and never waits."""

    def __init__(
        self,
        state: Callable[[], DesiredState],
        fetcher: QueueFetcher,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._fetcher = fetcher
        self.interval_s = interval_s
        self._clock = clock
        self._readings: dict[str, EndpointReading] = {}
        self._polled_at: float | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_POLLS)
        self._task = PollTask("queue-poller")

    def addresses(self) -> dict[str, tuple[str, int]]:
        """Every endpoint of every backend, once per address."""
        found: dict[str, tuple[str, int]] = {}
        for spec in self._state().backends.values():
            for endpoint in spec.endpoints:
                found[address_of(endpoint.host, endpoint.port)] = (endpoint.host, endpoint.port)
        return found

    async def poll_once(self) -> None:
        targets = self.addresses()
        results = await asyncio.gather(
            *(self._poll(address, host, port) for address, (host, port) in targets.items())
        )
        # Endpoints no longer in the state are dropped with the old readings.
        self._readings = {r.address: r for r in results}
        self._polled_at = self._clock()

    async def _poll(self, address: str, host: str, port: int) -> EndpointReading:
        previous = self._readings.get(address, EndpointReading(address))
        async with self._limit:
            try:
                status = await self._fetcher.fetch(host, port)
            except Exception as exc:  # any failure of one worker is that worker's state
                return EndpointReading(
                    address, previous.status, previous.fetched_at, error=_one_line(exc)
                )
        return EndpointReading(address, status, self._clock())

    def readings(self) -> dict[str, EndpointReading]:
        return dict(self._readings)

    def view(self, model: str | None = None) -> QueueAggregate:
        """The aggregate per model (or just ``model``; KeyError when it is not configured)."""
        state, now = self._state(), self._clock()
        names = sorted(state.models) if model is None else [model]
        if model is not None and model not in state.models:
            raise KeyError(model)
        return QueueAggregate(
            poll_interval_s=self.interval_s,
            age_s=None if self._polled_at is None else round(now - self._polled_at, 3),
            models={
                name: aggregate_model(state.models[name], state, self._readings, now)
                for name in names
            },
        )

    async def start(self) -> None:
        self._task.start(self._loop)

    async def aclose(self) -> None:
        await self._task.aclose()
        await self._fetcher.aclose()

    async def _loop(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.poll_once()
            except Exception:  # a bug here must not end the polling for good
                log.exception("queue poll failed")
            await asyncio.sleep(max(0.05, self.interval_s - (self._clock() - started)))
