"""SlotExecutor: runs whole requests on an engine that cannot batch, `concurrency` at a time."""

from __future__ import annotations

import asyncio

from ..engines.base import Engine, StreamingEngine
from .host import SchedulerHost
from .spans import now_ns, record_stage
from .ticket import Ticket


class SlotExecutor:
    def __init__(self, host: SchedulerHost, engine: Engine) -> None:
        self.host = host
        self.engine = engine
        self._tasks: dict[Ticket, asyncio.Task[None]] = {}

    async def run(self) -> None:
        slots = [asyncio.create_task(self._slot()) for _ in range(self.host.policy.concurrency)]
        try:
            await asyncio.gather(*slots)
        finally:
            for slot in slots:
                slot.cancel()

    async def _slot(self) -> None:
        s = self.host
        while True:
            ticket = s.next_ticket()
            if ticket is None:
                await s.wait_for_work()
                continue
            s.report_batch_size(s.in_flight())
            task = asyncio.create_task(self._synthesize(ticket))
            self._tasks[ticket] = task
            try:
                # wait(), not await: a cancelled request must not cancel its slot.
                await asyncio.wait({task})
            finally:
                self._tasks.pop(ticket, None)

    async def _synthesize(self, ticket: Ticket) -> None:
        s = self.host
        start = now_ns()
        try:
            if isinstance(self.engine, StreamingEngine):
                # Each piece goes to the client as soon as the model has made it.
                async for samples in self.engine.stream(ticket.request):
                    ticket.emit(samples, s.clock())
            else:
                ticket.emit(await self.engine.synthesize(ticket.request), s.clock())
        except asyncio.CancelledError:
            s.release(ticket)
            raise
        except Exception as exc:
            s.fail(ticket, exc)
            return
        record_stage(ticket, "synthesize", start, now_ns(), engine=self.engine.name)
        s.complete(ticket, self.engine.sample_rate)

    def cancel(self, ticket: Ticket) -> None:
        task = self._tasks.get(ticket)
        if task is not None:
            task.cancel()
        else:
            self.host.release(ticket)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
