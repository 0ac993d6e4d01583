"""Canary turns bad -> its weight is 0%: how long a gated rollout takes to roll it back.

One run starts a real stack on 127.0.0.1 (free ports, a temporary state dir): redis,
the control plane with its rollout controller, the gateway filter and one Envoy that
streams its stats to the control plane every 2 s (metrics_service). Two controllable
test backends, `stable` and `canary`, are registered as the two variants of a model.
Client load is `--loops` closed loops of `GET /v1/audio/voices?model=M`, each response
counted by its `x-tts-backend`.

Per trial (a fresh model each, so each rollout starts from `stable=100`) it starts a
rollout (`--steps`, `--interval`, gates), waits until the first check passed and the
canary reached its second step, then turns the canary bad (`--error-rate` 5xx) at a set
phase of that interval: `--phases 0.5` means halfway between two checks. It polls
`GET /api/v1/rollouts/{id}` until the canary's weight is 0 and reports the time from
turning bad to 0% (in seconds and in intervals, client-polled and from the server's
`rolled_back` event), the checks that judged it, and the share of all client requests
that failed during the episode (turned bad -> 0%). The target is <= 2 intervals; it
prints PASS / MISS per trial and always exits 0.

This benchmark imports the e2e test stack (`tests/e2e/stack.py`) and the controllable
test backend (`tests/fakes/controllable_backend.py`, through `tests/e2e/controllable.py`)
from the repository's tests: the same real processes the rollout e2e tests run, reused
rather than copied. Run it from the repository root as a script:
`.venv/bin/python benchmarks/rollback.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _harness import Reply, run_main, steady_get

# The repository root, for `tests.*` (a script's sys.path has only benchmarks/).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.controllable import ControllableBackend, start_and_register
from tests.e2e.stack import Stack

STABLE, CANARY = "stable", "canary"
FLUSH_S = 2.0  # Envoy's stats flush period in the stack's bootstrap
TARGET_INTERVALS = 2.0


@dataclass
class Trial:
    phase: float
    model: str
    rollout_id: int = 0
    bad_at_weight: int = 0
    to_zero_s: float | None = None  # client-polled
    server_to_zero_s: float | None = None  # the rolled_back event's time
    status: str = ""
    episode: list[Reply] = field(default_factory=list)
    after: list[Reply] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="rollout interval, seconds")
    parser.add_argument("--steps", default="5,25,50,100", help="canary weights in percent")
    parser.add_argument(
        "--phases",
        default="0.2,0.5,0.9",
        help="when the canary turns bad, as a fraction of the interval after the first "
        "passed check; one trial (rollout) per phase",
    )
    parser.add_argument("--error-rate", type=float, default=0.2, help="the bad canary's 5xx share")
    parser.add_argument("--min-success-rate", type=float, default=0.99)
    parser.add_argument("--min-requests", type=int, default=20)
    parser.add_argument("--max-failed-checks", type=int, default=1)
    parser.add_argument("--loops", type=int, default=4, help="concurrent client loops")
    parser.add_argument(
        "--pause", type=float, default=0.02, help="seconds between a loop's requests"
    )
    parser.add_argument("--quick", action="store_true", help="smoke: 4 s interval, one phase")
    args = parser.parse_args(argv)
    if args.quick:
        args.interval, args.phases = 4.0, "0.5"
    args.step_list = [int(s) for s in args.steps.split(",")]
    args.phase_list = [float(p) for p in args.phases.split(",")]
    return args


async def add_model(stack: Stack, model: str) -> None:
    body = {"splits": [{"backend": STABLE, "weight": 100}], "cache_ttl_s": 0}
    async with stack.admin_client() as admin:
        r = await admin.put(f"/api/v1/models/{model}?wait=acked", json=body)
        r.raise_for_status()
    # The filter learns new models by long poll.
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=5, trust_env=False) as client:
        for _ in range(100):
            if (await client.get("/v1/audio/voices", params={"model": model})).status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"model {model} never became routable")


async def rollout(stack: Stack, rollout_id: int) -> dict[str, Any]:
    async with stack.admin_client() as admin:
        r = await admin.get(f"/api/v1/rollouts/{rollout_id}", params={"events": 1000})
        r.raise_for_status()
        return dict(r.json())


async def run_trial(
    stack: Stack, canary: ControllableBackend, trial: Trial, args: argparse.Namespace
) -> None:
    interval = args.interval
    await add_model(stack, trial.model)
    await canary.control(error_rate=0, reset=True)
    replies: list[Reply] = []
    stop = asyncio.Event()
    load = asyncio.create_task(
        steady_get(
            stack.gateway,
            "/v1/audio/voices",
            {"model": trial.model},
            loops=args.loops,
            pause_s=args.pause,
            stop=stop,
            replies=replies,
        )
    )
    try:
        spec = {
            "model": trial.model,
            "canary": CANARY,
            "steps": args.step_list,
            "interval_s": interval,
            "gates": {
                "min_success_rate": args.min_success_rate,
                "min_requests": args.min_requests,
                "max_failed_checks": args.max_failed_checks,
            },
        }
        async with stack.admin_client() as admin:
            r = await admin.post("/api/v1/rollouts", json=spec, headers={"X-Author": "bench"})
            r.raise_for_status()
        trial.rollout_id = r.json()["id"]

        # The first check passed and the canary is on its second step (or it ended early).
        deadline = time.monotonic() + 4 * interval
        data = await rollout(stack, trial.rollout_id)
        while data["step_index"] < 1 and data["status"] == "running":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the healthy canary never passed its first check: {data}")
            await asyncio.sleep(0.1)
            data = await rollout(stack, trial.rollout_id)
        if data["status"] != "running":
            raise RuntimeError(f"rollout ended before the canary turned bad: {data}")
        trial.bad_at_weight = data["weight"]

        # Turn bad at the phase of this interval; next_check_at is the server's Unix time.
        bad_wall = data["next_check_at"] - (1 - trial.phase) * interval
        await asyncio.sleep(max(0.0, bad_wall - time.time()))
        await canary.control(error_rate=args.error_rate)
        bad_wall, bad_mono = time.time(), time.monotonic()

        deadline = bad_mono + 5 * interval
        zero_mono: float | None = None
        while True:
            data = await rollout(stack, trial.rollout_id)
            if data["weight"] == 0 or data["status"] not in ("running", "paused"):
                zero_mono = time.monotonic()
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        trial.status = data["status"]
        if zero_mono is not None and data["weight"] == 0:
            trial.to_zero_s = zero_mono - bad_mono
            back = [e for e in data["events"] if e["kind"] in ("rolled_back", "aborted")]
            if back:
                trial.server_to_zero_s = back[-1]["at"] - bad_wall
        trial.checks = [
            e for e in data["events"] if e["kind"] == "check" and e["at"] >= bad_wall - interval
        ]
        await asyncio.sleep(2.0)  # a little traffic after the rollback's route push
        end = zero_mono if zero_mono is not None else time.monotonic()
        trial.episode = [r for r in replies if bad_mono <= r.at <= end]
        trial.after = [r for r in replies if r.at > end + 1.0]
    finally:
        stop.set()
        await load


def failed(replies: list[Reply]) -> int:
    return sum(1 for r in replies if r.status != 200)


def report(trials: list[Trial], args: argparse.Namespace) -> None:
    interval = args.interval
    print(
        f"\ninterval {interval:g} s, steps {args.steps}, canary turns bad with "
        f"{args.error_rate:.0%} 5xx; gates: success >= {args.min_success_rate:g}, "
        f">= {args.min_requests} requests, {args.max_failed_checks} failed check(s) tolerated"
    )
    head = (
        f"{'phase':>5}  {'bad at':>6}  {'to 0% (polled)':>15}  {'to 0% (server)':>14}  "
        f"{'episode reqs':>12}  {'failed':>6}  {'share':>6}  {'after':>9}  verdict"
    )
    print(head)
    for t in trials:
        polled = "-" if t.to_zero_s is None else f"{t.to_zero_s:.1f}s {t.to_zero_s / interval:.2f}i"
        server = (
            "-"
            if t.server_to_zero_s is None
            else f"{t.server_to_zero_s:.1f}s {t.server_to_zero_s / interval:.2f}i"
        )
        n, bad = len(t.episode), failed(t.episode)
        share = f"{bad / n:.2%}" if n else "-"
        after = f"{failed(t.after)}/{len(t.after)}"
        ok = t.to_zero_s is not None and t.to_zero_s <= TARGET_INTERVALS * interval
        verdict = "PASS" if ok else "MISS"
        print(
            f"{t.phase:>5g}  {t.bad_at_weight:>5}%  {polled:>15}  {server:>14}  {n:>12}  "
            f"{bad:>6}  {share:>6}  {after:>9}  {verdict} (target <= {TARGET_INTERVALS:g} "
            f"intervals; {t.status})"
        )
    for t in trials:
        print(f"\nphase {t.phase:g}, rollout {t.rollout_id}: checks since one interval before")
        for e in t.checks:
            f = e.get("figures") or {}
            figures = f"{f.get('requests')} req, {f.get('errors_5xx')} 5xx" if f else "(no figures)"
            print(f"  {e['verdict']:<5} at {e['weight']:>3}%  {figures}: {e['message']}")


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ttsgw-rollback-") as tmp:
        stack = Stack(Path(tmp))
        try:
            print("starting redis, control plane, filter, Envoy, 2 test backends", file=sys.stderr)
            await stack.start_all(workers=False)
            _, canary = await asyncio.gather(
                start_and_register(stack, STABLE), start_and_register(stack, CANARY)
            )
            trials = []
            for i, phase in enumerate(args.phase_list):
                # Let the canary's last flush from the previous trial arrive first.
                await asyncio.sleep(FLUSH_S + 0.5)
                trial = Trial(phase, f"rollback-{i + 1}")
                print(f"trial {i + 1}/{len(args.phase_list)}: phase {phase:g}", file=sys.stderr)
                await run_trial(stack, canary, trial, args)
                trials.append(trial)
            report(trials, args)
        except Exception:
            print(stack.logs(), file=sys.stderr)
            raise
        finally:
            await asyncio.shield(stack.stop())
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main(parse_args(None))))
