"""Scheduler: admits requests into priority queues, sheds under overload, runs an executor."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..engines.base import Engine, SynthesisRequest
from ..engines.batching import BatchingEngine
from ..errors import OverloadedError, SynthesisError, WorkerError
from ..metrics import WorkerMetrics
from .drain import DrainRate
from .executors import make_executor
from .host import Executor, ExecutorFactory
from .levels import LEVELS
from .policy import SchedulerPolicy
from .queue import LevelQueues, Rejected
from .spans import record_stage
from .ticket import Ticket

# How often queued requests are checked against their level's queue timeout.
EXPIRY_INTERVAL_S = 0.05

_SHED_MESSAGES = {
    "queue_full": "the {level} queue is full",
    "evicted": "a higher-priority request took this {level} request's place in the queue",
    "wait_too_long": "the expected wait exceeds the {level} queue timeout",
    "queue_timeout": "the request waited longer than the {level} queue timeout",
}


class Scheduler:
    """One per worker. `submit` is synchronous: a request is queued or refused at once.

    It builds its executor with `executor_factory`, handing itself over as the executor's
    `SchedulerHost`; the executor reports back only through that interface.
    """

    def __init__(
        self,
        engine: Engine,
        policy: SchedulerPolicy,
        metrics: WorkerMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        executor_factory: ExecutorFactory = make_executor,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.queues = LevelQueues(policy)
        self.drain = DrainRate(policy.drain_window_s)
        self.running: set[Ticket] = set()
        self.batch_size = 0
        self._wake = asyncio.Event()
        self.executor: Executor = executor_factory(self, engine)
        if metrics is not None:
            metrics.track_queue(self.queues.depths, list(LEVELS))
            metrics.in_flight.labels(metrics.engine).set_function(lambda: len(self.running))

    @property
    def batching(self) -> bool:
        return isinstance(self.engine, BatchingEngine)

    # Admission.
    def submit(
        self,
        req: SynthesisRequest,
        level: str,
        *,
        stream: bool = False,
        trace_context: Any = None,
    ) -> Ticket:
        now = self.clock()
        ticket = Ticket(req, level, now, stream=stream, trace_context=trace_context)
        wait = self.drain.wait_s(self.queues.ahead_of(level) + 1, now)
        timeout = self.policy.queue_timeouts_s[level]
        if wait is not None and wait > timeout and self.drain.confident(now):
            raise self._shed(ticket, "wait_too_long", now)
        try:
            evicted = self.queues.push(ticket)
        except Rejected as exc:
            raise self._shed(ticket, exc.reason, now) from None
        if evicted is not None:
            evicted.fail(self._shed(evicted, "evicted", now), now)
        self._wake.set()
        return ticket

    def _shed(self, ticket: Ticket, reason: str, now: float) -> OverloadedError:
        retry = self.drain.retry_after_s(len(self.queues), now)
        if self.metrics is not None:
            self.metrics.shed.labels(self.metrics.engine, ticket.level, reason).inc()
        what = _SHED_MESSAGES[reason].format(level=ticket.level)
        return OverloadedError(
            f"Worker overloaded: {what}. Retry after {retry} s, or use a higher priority class.",
            retry_after_s=retry,
            code=reason,
        )

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: drop a queued ticket, or free its batch slot."""
        if ticket.done:
            return
        ticket.cancelled = True
        if self.queues.remove(ticket):
            return
        self.executor.cancel(ticket)

    # The executor's side (the SchedulerHost protocol).
    def queued(self) -> int:
        return len(self.queues)

    def in_flight(self) -> int:
        return len(self.running)

    def report_batch_size(self, size: int) -> None:
        self.batch_size = size

    def next_ticket(self) -> Ticket | None:
        now = self.clock()
        ticket = self.queues.pop(now)
        if ticket is None:
            return None
        ticket.started = now
        self.running.add(ticket)
        if self.metrics is not None:
            self.metrics.queue_wait_seconds.labels(self.metrics.engine, ticket.level).observe(
                now - ticket.arrived
            )
        wall_ns = time.time_ns()
        record_stage(ticket, "queue_wait", wall_ns - int((now - ticket.arrived) * 1e9), wall_ns)
        return ticket

    def next_level(self) -> str | None:
        """The level of the ticket `next_ticket` would return, without taking it."""
        ticket = self.queues.peek(self.clock())
        return None if ticket is None else ticket.level

    async def wait_for_work(self) -> None:
        if len(self.queues):
            return
        self._wake.clear()
        await self._wake.wait()

    def complete(self, ticket: Ticket, sample_rate: int) -> None:
        now = self.clock()
        self.running.discard(ticket)
        self.drain.record(now)
        if self.metrics is not None and ticket.started is not None:
            m, engine = self.metrics, self.metrics.engine
            m.observe_synthesis(now - ticket.started, ticket.audio_samples / sample_rate)
            if ticket.first_chunk_at is not None:
                m.first_chunk_seconds.labels(engine).observe(ticket.first_chunk_at - ticket.arrived)
        ticket.finish(now)

    def fail(self, ticket: Ticket, exc: BaseException) -> None:
        self.running.discard(ticket)
        if not isinstance(exc, WorkerError):
            exc = SynthesisError(
                f"Engine {self.engine.name!r} failed to synthesise: {type(exc).__name__}."
            )
        ticket.fail(exc, self.clock())

    def release(self, ticket: Ticket) -> None:
        """A cancelled ticket leaves without an answer (nobody is listening)."""
        self.running.discard(ticket)

    # Status.
    def status(self) -> dict[str, Any]:
        now = self.clock()
        depths = self.queues.depths()
        levels = {}
        for level in LEVELS:
            wait = self.drain.wait_s(self.queues.ahead_of(level), now)
            levels[level] = {
                "depth": depths[level],
                "limit": self.policy.queue_limits[level],
                "timeout_s": self.policy.queue_timeouts_s[level],
                "oldest_wait_s": round(self.queues.oldest_wait_s(level, now), 3),
                "estimated_wait_s": None if wait is None else round(wait, 3),
            }
        rate = self.drain.rate(now)
        return {
            "object": "queue",
            "engine": self.engine.name,
            "batching": self.batching,
            "levels": levels,
            "queued": len(self.queues),
            "in_flight": len(self.running),
            "batch_size": self.batch_size,
            "max_batch_size": self.policy.max_batch_size if self.batching else None,
            "concurrency": None if self.batching else self.policy.concurrency,
            "drain_rate_per_s": None if rate is None else round(rate, 3),
        }

    # Lifecycle.
    @contextlib.asynccontextmanager
    async def running_loop(self) -> AsyncIterator[Scheduler]:
        tasks = [asyncio.create_task(self.executor.run()), asyncio.create_task(self._expire())]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.executor.close()

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_S)
            now = self.clock()
            for ticket in self.queues.expire(now):
                ticket.fail(self._shed(ticket, "queue_timeout", now), now)
