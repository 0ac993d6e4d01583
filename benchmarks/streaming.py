"""Streaming: first-chunk latency p50/p95 of live PCM streams at concurrency 1, 4 and 16.

A real synthetic worker with batching on; each client streams `pcm` and records the time
to its first audio byte and to the end. The first chunk is 1 s of audio (25 speech
tokens), and first chunks outrank later chunks of running streams in the vocoder.

    .venv/bin/python -m benchmarks.streaming [--seconds 10]
"""

from __future__ import annotations

import argparse

from benchmarks._harness import percentile, run_main
from benchmarks._worker import closed_loop, synthetic_worker

CONCURRENCY = (1, 4, 16)


async def main(seconds: float, device: str) -> int:
    async with synthetic_worker("streaming", device=device, max_batch_size=16) as url:
        await closed_loop(url, 4, 2)  # warm-up
        print(
            f"{'concurrency':>11} {'n':>5} {'first p50 ms':>13} {'first p95 ms':>13} "
            f"{'total p50 ms':>13}"
        )
        for c in CONCURRENCY:
            ok = [o for o in await closed_loop(url, c, seconds) if o.status == 200]
            first = [o.first_byte_s * 1000 for o in ok]
            total = [o.latency_s * 1000 for o in ok]
            print(
                f"{c:>11} {len(ok):>5} {percentile(first, 50):>13.0f} "
                f"{percentile(first, 95):>13.0f} {percentile(total, 50):>13.0f}"
            )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured time per level")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="worker device")
    args = p.parse_args()
    raise SystemExit(run_main(main(args.seconds, args.device)))
