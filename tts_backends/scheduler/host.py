"""What an executor may see of the scheduler that runs it, and how it is built.

The scheduler owns admission and the queues; an executor takes tickets, runs them on the
engine and hands them back. Executors depend on this interface, never on the scheduler,
so the scheduler can build them through an `ExecutorFactory` without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..engines.base import Engine
from ..metrics import WorkerMetrics
from .policy import SchedulerPolicy
from .ticket import Ticket


class SchedulerHost(Protocol):
    """The scheduler as its executor sees it."""

    @property
    def policy(self) -> SchedulerPolicy: ...

    @property
    def metrics(self) -> WorkerMetrics | None: ...

    def clock(self) -> float: ...

    def queued(self) -> int:
        """How many tickets wait in the queues."""
        ...

    def in_flight(self) -> int:
        """How many tickets an executor has taken and not yet handed back."""
        ...

    def next_ticket(self) -> Ticket | None: ...

    def next_level(self) -> str | None: ...

    async def wait_for_work(self) -> None: ...

    def complete(self, ticket: Ticket, sample_rate: int) -> None: ...

    def fail(self, ticket: Ticket, exc: BaseException) -> None: ...

    def release(self, ticket: Ticket) -> None: ...

    def report_batch_size(self, size: int) -> None:
        """How many requests the engine ran together last; shown in the queue status."""
        ...


class Executor(Protocol):
    """Runs the host's tickets on an engine until cancelled."""

    async def run(self) -> None: ...

    def cancel(self, ticket: Ticket) -> None: ...

    def close(self) -> None: ...


ExecutorFactory = Callable[[SchedulerHost, Engine], Executor]
