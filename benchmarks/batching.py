"""Batching: synthetic-engine throughput (audio seconds per wall second), batching on vs off.

Two real workers run side by side, one with `max_batch_size=32` and one with 1 (every
request alone), and each concurrency level is measured on both in turn, so the ratio
comes from one run on one machine. Target (issue 4): at least 3x at concurrency 16.

    .venv/bin/python -m benchmarks.batching [--seconds 8]
"""

from __future__ import annotations

import argparse
import time

from benchmarks._harness import run_main
from benchmarks._worker import closed_loop, synthetic_worker

CONCURRENCY = (1, 4, 16, 32)


async def main(seconds: float, device: str) -> int:
    async with (
        synthetic_worker("batching-on", device=device, max_batch_size=32) as on,
        synthetic_worker("batching-off", device=device, max_batch_size=1) as off,
    ):
        print(
            f"{'concurrency':>11} {'off audio-s/s':>14} {'on audio-s/s':>13} {'ratio':>6}"
            f" {'off p50 s':>9} {'on p50 s':>9}"
        )
        for c in CONCURRENCY:
            row = {}
            for name, url in (("off", off), ("on", on)):
                await closed_loop(url, c, min(2.0, seconds))  # warm the batch shape
                started = time.perf_counter()
                outcomes = await closed_loop(url, c, seconds)
                wall = time.perf_counter() - started
                ok = [o for o in outcomes if o.status == 200]
                lat = sorted(o.latency_s for o in ok)
                row[name] = (sum(o.audio_s for o in ok) / wall, lat[len(lat) // 2])
            ratio = row["on"][0] / row["off"][0]
            print(
                f"{c:>11} {row['off'][0]:>14.1f} {row['on'][0]:>13.1f} {ratio:>5.1f}x"
                f" {row['off'][1]:>9.2f} {row['on'][1]:>9.2f}"
            )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="measured time per cell")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="worker device")
    args = p.parse_args()
    raise SystemExit(run_main(main(args.seconds, args.device)))
