"""GPU: the synthetic engine on CUDA at its small size and at CosyVoice3's LM size (0.5B).

Prints the GPU model, then per size: parameters, real-time factor of one request alone,
and first-chunk latency p50/p95 of live streams at concurrency 1, 4 and 16 through the
scheduler (batching on). Without a CUDA device it says so and measures nothing.

    .venv/bin/python -m benchmarks.gpu [--requests 32]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from benchmarks._harness import percentile, run_main
from benchmarks._worker import TEXT
from tts_backends.engines.base import SynthesisRequest
from tts_backends.engines.synthetic import SyntheticEngine
from tts_backends.engines.synthetic_model import SAMPLE_RATE
from tts_backends.scheduler import Scheduler, SchedulerPolicy

SIZES = ("small", "0.5b")
CONCURRENCY = (1, 4, 16)


async def first_chunks(engine: SyntheticEngine, concurrency: int, n: int) -> list[float]:
    scheduler = Scheduler(engine, SchedulerPolicy(max_batch_size=16))
    firsts: list[float] = []

    async def client(i: int) -> None:
        for k in range(i, n, concurrency):
            started = time.perf_counter()
            ticket = scheduler.submit(
                SynthesisRequest(text=f"{TEXT} {k}", voice="synthetic-1"), "default", stream=True
            )
            first = None
            async for _ in ticket.chunks():
                first = first or time.perf_counter() - started
            if first is not None:
                firsts.append(first)

    async with scheduler.running_loop():
        await asyncio.gather(*(client(i) for i in range(concurrency)))
    return firsts


async def main(requests: int) -> int:
    if not torch.cuda.is_available():
        print("No CUDA device here: nothing measured.")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for size in SIZES:
        engine = SyntheticEngine(device="cuda", size=size)
        await engine.load()
        params = sum(p.numel() for p in engine.model.parameters()) / 1e6
        req = SynthesisRequest(text=TEXT, voice="synthetic-1")
        await engine.synthesize(req)  # warm-up: CUDA kernels, allocator
        torch.cuda.synchronize()
        started = time.perf_counter()
        audio = await engine.synthesize(req)
        rtf = (time.perf_counter() - started) / (audio.size / SAMPLE_RATE)
        print(f"\n{size}: {params:.0f}M parameters; RTF alone {rtf:.3f}")
        print(f"{'concurrency':>11} {'first p50 ms':>13} {'first p95 ms':>13}")
        for c in CONCURRENCY:
            ms = [f * 1000 for f in await first_chunks(engine, c, requests)]
            print(f"{c:>11} {percentile(ms, 50):>13.0f} {percentile(ms, 95):>13.0f}")
        mem = torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory allocated: {mem:.2f} GiB")
        del engine
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=32, help="streams per concurrency level")
    raise SystemExit(run_main(main(p.parse_args().requests)))
