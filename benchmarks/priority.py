"""Priority under overload: high-priority latency while low-priority load runs at twice capacity.

One real synthetic worker. Steps, all in one run:
1. idle: the median latency of sequential high-priority requests on an idle worker;
2. capacity: the completion rate of low-priority requests with a full batch (closed loop);
3. overload: low-priority arrivals at twice that rate (open loop) for `--seconds`, while a
   probe sends one request after another, first marked high, then unmarked (default, so
   without priority), for half the time each. Low requests beyond capacity are shed (429).
4. the same on the scheduler alone, in this process, without HTTP.
Target (issue 4): high-priority median latency under overload <= 1.5x its idle value.

    .venv/bin/python -m benchmarks.priority [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from benchmarks._harness import run_main
from benchmarks._worker import TEXT, Outcome, closed_loop, speak, synthetic_worker
from tts_backends.engines.base import SynthesisRequest
from tts_backends.engines.synthetic import SyntheticEngine
from tts_backends.errors import OverloadedError
from tts_backends.scheduler import Scheduler, SchedulerPolicy

SHORT = "A short, urgent request from a paying customer."  # ~4 s of audio


async def probe(url: str, priority: str | None, seconds: float) -> list[Outcome]:
    out: list[Outcome] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while time.perf_counter() < deadline:
            out.append(await speak(client, SHORT, priority))
            await asyncio.sleep(0.05)
    return out


async def flood(url: str, rate: float, stop: asyncio.Event, results: list[Outcome]) -> None:
    """Open-loop low-priority arrivals at `rate` per second until `stop`."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                results.append(await speak(client, priority="low"))
            except httpx.HTTPError:
                results.append(Outcome(0, 0, 0, 0))

        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)


async def engine_level(
    seconds: float, rate: float, rows_beside_high: int
) -> tuple[float, float, int, int]:
    """The same experiment on the scheduler in this process, without HTTP.

    On a 2-core box the HTTP path (the worker's event loop, the flood's client) competes
    with the engine thread for CPU; this separates what the scheduler does from that.
    Returns (idle median s, overload median s, shed, served).
    """
    engine = SyntheticEngine()
    await engine.load()
    policy = SchedulerPolicy(
        max_batch_size=16,
        rows_beside_high=rows_beside_high,
        queue_timeouts_s={"high": 30, "default": 20, "low": 5},
    )
    scheduler = Scheduler(engine, policy)
    counts = {"shed": 0, "served": 0}

    async def high_probe(n: int) -> float:
        times = []
        for i in range(n):
            started = time.perf_counter()
            ticket = scheduler.submit(SynthesisRequest(f"{SHORT} {i}", "synthetic-1"), "high")
            await ticket.collect()
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        return statistics.median(times)

    async def one_low(i: int) -> None:
        try:
            await scheduler.submit(SynthesisRequest(f"{TEXT} {i}", "synthetic-1"), "low").collect()
            counts["served"] += 1
        except OverloadedError:
            counts["shed"] += 1

    async with scheduler.running_loop():
        await high_probe(3)
        idle = await high_probe(10)
        tasks: set[asyncio.Task[None]] = set()
        deadline = time.perf_counter() + seconds
        probe_task = None
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            task = asyncio.create_task(one_low(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if probe_task is None and time.perf_counter() > deadline - seconds + 3:
                probe_task = asyncio.create_task(high_probe(15))
            await asyncio.sleep(1 / rate)
        busy = await probe_task if probe_task is not None else float("nan")
        await asyncio.gather(*tasks)
    return idle, busy, counts["shed"], counts["served"]


def median_s(outcomes: list[Outcome]) -> float:
    return statistics.median(o.latency_s for o in outcomes if o.status == 200)


async def main(seconds: float, device: str, rows_beside_high: int) -> int:
    async with synthetic_worker(
        "priority",
        device=device,
        max_batch_size=16,
        queue_timeout_low_s=5,
        rows_beside_high=rows_beside_high,
    ) as url:
        await probe(url, "high", 2)  # warm-up
        idle = median_s(await probe(url, "high", 6))
        capacity_run = await closed_loop(url, 16, 8)
        capacity = sum(o.status == 200 for o in capacity_run) / 8
        stop, lows = asyncio.Event(), list[Outcome]()
        flooding = asyncio.create_task(flood(url, 2 * capacity, stop, lows))
        await asyncio.sleep(3)  # let the queue fill
        high = await probe(url, "high", seconds / 2)
        unmarked = await probe(url, None, seconds / 2)
        stop.set()
        await flooding
    shed = sum(o.status == 429 for o in lows)
    e_idle, e_busy, e_shed, e_served = await engine_level(seconds, 2 * capacity, rows_beside_high)
    print(f"capacity (low, batch 16):        {capacity:.2f} req/s; flood at {2 * capacity:.2f}")
    print(f"idle high median:                {idle * 1000:.0f} ms")
    print(
        f"overload high median:            {median_s(high) * 1000:.0f} ms "
        f"({median_s(high) / idle:.2f}x idle, n={len(high)})"
    )
    print(
        f"overload unmarked (default):     {median_s(unmarked) * 1000:.0f} ms "
        f"({median_s(unmarked) / idle:.2f}x idle, n={len(unmarked)})"
    )
    print(
        f"low requests: {len(lows)} sent, {shed} shed with 429 "
        f"({100 * shed / max(1, len(lows)):.0f}%), "
        f"{sum(o.status == 200 for o in lows)} served"
    )
    print(
        f"scheduler alone (no HTTP): high {e_idle * 1000:.0f} ms idle, {e_busy * 1000:.0f} ms "
        f"under the flood ({e_busy / e_idle:.2f}x); lows {e_shed} shed, {e_served} served"
    )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="overload probe time")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="worker device")
    p.add_argument(
        "--rows-beside-high",
        type=int,
        default=SchedulerPolicy().rows_beside_high,
        help="lower-level batch rows kept while high is in flight (the worker's default)",
    )
    args = p.parse_args()
    raise SystemExit(run_main(main(args.seconds, args.device, args.rows_beside_high)))
