"""The scheduler running engines: batching, streaming chunks, priority, cancellation, OOM."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from tests.fakes.gated_engine import GatedEngine
from tts_backends.engines.base import Engine, SynthesisRequest
from tts_backends.engines.batching import Session
from tts_backends.engines.gpu_memory import oom_guard
from tts_backends.engines.synthetic import FIRST_CHUNK_TOKENS, SyntheticEngine, SyntheticSession
from tts_backends.errors import EngineOutOfMemoryError, OverloadedError
from tts_backends.metrics import WorkerMetrics
from tts_backends.scheduler import Scheduler, SchedulerPolicy, Ticket
from tts_backends.scheduler.host import SchedulerHost

TEXTS = [
    "Batching must not change a single sample.",
    "Short.",
    "A somewhat longer sentence, so that rows leave the batch at different steps.",
    "Numbers 1 2 3 and punctuation; too!",
]


def req(text: str, voice: str = "synthetic-1") -> SynthesisRequest:
    return SynthesisRequest(text=text, voice=voice)


@pytest.fixture(scope="module")
def synthetic() -> SyntheticEngine:
    engine = SyntheticEngine(seed=0)
    asyncio.run(engine.load())
    return engine


async def test_batched_output_equals_unbatched(synthetic: SyntheticEngine) -> None:
    requests = [req(t, f"synthetic-{1 + i % 4}") for i, t in enumerate(TEXTS * 2)]
    alone = [await synthetic.synthesize(r) for r in requests]
    metrics = WorkerMetrics("synthetic")
    scheduler = Scheduler(synthetic, SchedulerPolicy(max_batch_size=8, max_wait_s=0.05), metrics)
    async with scheduler.running_loop():
        tickets = [scheduler.submit(r, "default") for r in requests]
        batched = await asyncio.gather(*(t.collect() for t in tickets))
    assert max(t.max_batch for t in tickets) > 1  # they really shared engine steps
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape
        # Same tokens, same chunking: only float summation order may differ by a few ulps.
        np.testing.assert_allclose(a, b, atol=1e-5)
    labels = {"engine": "synthetic", "stage": "generate_tokens"}
    total = metrics.registry.get_sample_value("tts_worker_batch_size_sum", labels)
    steps = metrics.registry.get_sample_value("tts_worker_batch_size_count", labels)
    assert total is not None and steps is not None and total > steps  # mean batch above 1


async def test_long_requests_come_back_in_chunks_first_one_short(synthetic) -> None:
    scheduler = Scheduler(synthetic, SchedulerPolicy())
    async with scheduler.running_loop():
        ticket = scheduler.submit(req("x" * 100), "default", stream=True)
        chunks = [c async for c in ticket.chunks()]
    assert len(chunks) == 5  # 200 tokens: 25, then 50, 50, 50 and the last 25
    assert chunks[0].size == FIRST_CHUNK_TOKENS * 2 * 480
    assert ticket.first_chunk_at is not None and ticket.first_chunk_at < ticket.finished_at  # type: ignore[operator]


async def test_a_cancelled_request_frees_its_batch_slot(synthetic) -> None:
    scheduler = Scheduler(synthetic, SchedulerPolicy(max_batch_size=1, max_wait_s=0))
    async with scheduler.running_loop():
        long = scheduler.submit(req("a very long request " * 40), "default")
        short = scheduler.submit(req("short"), "default")
        while long.started is None:
            await asyncio.sleep(0.001)
        assert short.started is None  # one slot, taken by the long request
        scheduler.cancel(long)
        await asyncio.wait_for(short.collect(), 5)
        assert long not in scheduler.running and long.finished_at is None


async def test_higher_levels_run_first_under_overload() -> None:
    engine = GatedEngine()
    scheduler = Scheduler(engine, SchedulerPolicy(concurrency=1, aging_s=0))
    async with scheduler.running_loop():
        first = scheduler.submit(req("busy"), "default")
        await asyncio.sleep(0.01)
        tickets = [
            scheduler.submit(req(text), level)
            for text, level in [
                ("low1", "low"),
                ("default1", "default"),
                ("high1", "high"),
                ("low2", "low"),
                ("high2", "high"),
            ]
        ]
        for text in ["busy", "high1", "high2", "default1", "low1", "low2"]:
            engine.release(text)
        await asyncio.gather(first.collect(), *(t.collect() for t in tickets))
    assert engine.started == ["busy", "high1", "high2", "default1", "low1", "low2"]


async def test_cancelling_a_running_whole_request_cancels_the_engine_call() -> None:
    engine = GatedEngine()
    scheduler = Scheduler(engine, SchedulerPolicy(concurrency=1))
    async with scheduler.running_loop():
        stuck = scheduler.submit(req("stuck"), "default")
        queued = scheduler.submit(req("next"), "default")
        await asyncio.sleep(0.01)
        scheduler.cancel(stuck)
        engine.release("next")
        await asyncio.wait_for(queued.collect(), 5)
    assert engine.cancelled == ["stuck"] and engine.started == ["stuck", "next"]


async def test_a_full_queue_sheds_low_first_with_retry_after() -> None:
    engine = GatedEngine()
    policy = SchedulerPolicy(concurrency=1, max_queue_depth=2, aging_s=0)
    metrics = WorkerMetrics("gated")
    scheduler = Scheduler(engine, policy, metrics)
    async with scheduler.running_loop():
        scheduler.submit(req("busy"), "default")
        await asyncio.sleep(0.01)
        low = scheduler.submit(req("low"), "low")
        scheduler.submit(req("default"), "default")
        high = scheduler.submit(req("high"), "high")  # full: evicts the low request
        with pytest.raises(OverloadedError) as evicted:
            await low.collect()
        assert evicted.value.code == "evicted" and evicted.value.retry_after_s >= 1
        with pytest.raises(OverloadedError) as refused:
            scheduler.submit(req("low2"), "low")  # nothing lower to evict
        assert refused.value.status == 429 and refused.value.code == "queue_full"
        for text in ("busy", "high", "default"):
            engine.release(text)
        await high.collect()
    assert metrics.shed.labels("gated", "low", "evicted")._value.get() == 1  # type: ignore[attr-defined]
    assert metrics.shed.labels("gated", "low", "queue_full")._value.get() == 1  # type: ignore[attr-defined]


async def test_a_request_that_waits_past_its_timeout_is_shed() -> None:
    engine = GatedEngine()
    policy = SchedulerPolicy(
        concurrency=1, queue_timeouts_s={"high": 30, "default": 30, "low": 0.1}
    )
    scheduler = Scheduler(engine, policy)
    async with scheduler.running_loop():
        scheduler.submit(req("busy"), "default")
        low = scheduler.submit(req("late"), "low")
        with pytest.raises(OverloadedError) as exc:
            await asyncio.wait_for(low.collect(), 5)
        engine.release("busy")
    assert exc.value.code == "queue_timeout"


async def test_expected_wait_beyond_the_timeout_is_refused_at_once() -> None:
    engine = GatedEngine(auto=True)
    policy = SchedulerPolicy(concurrency=1, queue_timeouts_s={"high": 30, "default": 30, "low": 1})
    scheduler = Scheduler(engine, policy)
    clock = [0.0]
    scheduler.clock = lambda: clock[0]
    for _ in range(5):  # a measured drain rate of 0.5 per second
        clock[0] += 2.0
        scheduler.drain.record(clock[0])
    with pytest.raises(OverloadedError) as exc:
        scheduler.submit(req("low"), "low")
    assert exc.value.code == "wait_too_long"
    scheduler.submit(req("high"), "high")  # 2 s expected: inside high's 30 s


async def test_a_few_completions_are_not_enough_to_refuse_on_expected_wait() -> None:
    engine = GatedEngine()
    policy = SchedulerPolicy(concurrency=1, queue_timeouts_s={"high": 30, "default": 30, "low": 1})
    scheduler = Scheduler(engine, policy)
    clock = [0.0]
    scheduler.clock = lambda: clock[0]
    scheduler.drain.record(5.0)  # one slow completion after a quiet start
    clock[0] = 6.0
    # Four queued lows would "wait" 40 s at 0.1/s, but one sample says little: all queued.
    tickets = [scheduler.submit(req(f"low{i}"), "low") for i in range(4)]
    assert len(scheduler.queues) == len(tickets)


class PoisonedEngine(SyntheticEngine):
    """The synthetic engine, except that any step containing "poison" runs out of GPU memory.

    A test double: torch's own OutOfMemoryError is raised as CUDA would raise it.
    """

    def step(self, sessions: Sequence[Session]) -> None:
        if any(getattr(s, "poison", False) for s in sessions):
            with oom_guard(self.name):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        super().step(sessions)

    def open_session(self, req: SynthesisRequest) -> SyntheticSession:
        session = super().open_session(req)
        session.poison = "poison" in req.text  # type: ignore[attr-defined]
        return session


async def test_out_of_memory_fails_only_that_request_and_the_worker_goes_on() -> None:
    engine = PoisonedEngine()
    await engine.load()
    scheduler = Scheduler(engine, SchedulerPolicy(max_batch_size=4, max_wait_s=0.05))
    async with scheduler.running_loop():
        good = [scheduler.submit(req(f"fine request {i}"), "default") for i in range(2)]
        bad = scheduler.submit(req("poison pill"), "default")
        with pytest.raises(EngineOutOfMemoryError) as exc:
            await bad.collect()
        outs = await asyncio.gather(*(t.collect() for t in good))
        after = await scheduler.submit(req("after the OOM"), "default").collect()
    assert exc.value.status == 503 and exc.value.code == "gpu_out_of_memory"
    assert all(o.size > 0 for o in outs) and after.size > 0


async def test_a_high_request_shrinks_the_batch_around_it(synthetic) -> None:
    policy = SchedulerPolicy(max_batch_size=8, rows_beside_high=2, aging_s=0, max_wait_s=0.05)
    scheduler = Scheduler(synthetic, policy)
    async with scheduler.running_loop():
        lows = [scheduler.submit(req("low priority filler " * 6), "low") for _ in range(6)]
        while scheduler.batch_size < 6:
            await asyncio.sleep(0.001)
        high = scheduler.submit(req("urgent"), "high")
        await high.collect()
        assert high.max_batch == 3  # itself and two low rows, not seven
        await asyncio.gather(*(t.collect() for t in lows))


class _OneAtATimeExecutor:
    """A test executor built by the scheduler's factory: it sees only the host interface."""

    def __init__(self, host: SchedulerHost, engine: Engine) -> None:
        self.host, self.engine, self.closed = host, engine, False

    async def run(self) -> None:
        while True:
            ticket = self.host.next_ticket()
            if ticket is None:
                await self.host.wait_for_work()
                continue
            self.host.report_batch_size(self.host.in_flight())
            ticket.emit(await self.engine.synthesize(ticket.request), self.host.clock())
            self.host.complete(ticket, self.engine.sample_rate)

    def cancel(self, ticket: Ticket) -> None:
        self.host.release(ticket)

    def close(self) -> None:
        self.closed = True


async def test_the_scheduler_runs_whatever_executor_its_factory_builds(synthetic) -> None:
    built: list[_OneAtATimeExecutor] = []

    def factory(host: SchedulerHost, engine: Engine) -> _OneAtATimeExecutor:
        built.append(_OneAtATimeExecutor(host, engine))
        return built[-1]

    scheduler = Scheduler(synthetic, SchedulerPolicy(), executor_factory=factory)
    assert [e.host for e in built] == [scheduler] and built[0].engine is synthetic
    async with scheduler.running_loop():
        audio = await scheduler.submit(req("through the factory"), "default").collect()
        status = scheduler.status()
    assert audio.size > 0
    assert status["batch_size"] == 1 and status["in_flight"] == 0
    assert built[0].closed
