"""Where an admin weight change spends its time before the push, at N models (cProfile).

Runs the real ControlPlane (SQLite store, translator, snapshot cache, no Envoys) on a
synthetic state of N backends and N models, makes timed weight changes, then profiles
a few more and prints the top functions by cumulative time. The figures behind the
"write path" paragraph of docs/performance.md.

    .venv/bin/python benchmarks/apply_profile.py [--models 1000] [--changes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _harness import splits_body, synthetic_state

from control_plane.domain import DesiredState, ModelSpec
from control_plane.service import ControlPlane
from control_plane.store import SQLiteRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet


def reweight(n: int, model_index: int, change: int) -> Callable[[DesiredState], DesiredState]:
    name = f"m{model_index}"

    def mutate(state: DesiredState) -> DesiredState:
        body = splits_body(n, model_index, change)
        updated = ModelSpec.model_validate({**state.models[name].model_dump(), **body})
        return state.model_copy(update={"models": {**state.models, name: updated}})

    return mutate


async def main(models: int, changes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteRevisionStore(Path(tmp) / "revisions.db")
        cp = ControlPlane(store, SnapshotCache(), Fleet(), TranslatorOptions())
        await cp.start(DesiredState.model_validate(synthetic_state(models)))
        target = models // 2
        timings = []
        for i in range(1, changes + 1):
            started = time.perf_counter()
            await cp.apply(reweight(models, target, i), author="bench", message="reweight")
            timings.append((time.perf_counter() - started) * 1000)
        print(
            f"{models} models: apply ms per weight change {[round(t) for t in timings]}, "
            f"median {statistics.median(timings):.0f}"
        )
        profile = cProfile.Profile()
        profile.enable()
        for i in range(changes + 1, 2 * changes + 1):
            await cp.apply(reweight(models, target, i), author="bench", message="reweight")
        profile.disable()
        print(f"\ncProfile of {changes} more changes (cumulative):")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.models, args.changes))
