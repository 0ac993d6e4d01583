"""Shared setup for the rollout tests: a real ControlPlane, a desired state with a canary, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from control_plane.domain import BackendSpec, DesiredState, Endpoint, ModelSpec, Split
from control_plane.rollouts.model import Gates, RolloutSpec
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore, RevisionStore, SQLiteRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet

INTERVAL = 0.05


def backend(port: int) -> BackendSpec:
    return BackendSpec(endpoints=[Endpoint(host="127.0.0.1", port=port)])


def seed() -> DesiredState:
    """Model `tts` on `stable`, a `canary` backend beside it, and an unrelated model `other`."""
    return DesiredState(
        backends={"stable": backend(8101), "canary": backend(8102), "spare": backend(8103)},
        models={
            "tts": ModelSpec(splits=[Split(backend="stable", weight=100)]),
            "other": ModelSpec(splits=[Split(backend="spare", weight=100)]),
        },
    )


async def control_plane(db: Path | None = None) -> ControlPlane:
    store: RevisionStore = InMemoryRevisionStore() if db is None else SQLiteRevisionStore(db)
    cp = ControlPlane(store, SnapshotCache(), Fleet(), TranslatorOptions())
    await cp.start(seed())
    return cp


def spec(**gates: object) -> RolloutSpec:
    return RolloutSpec(
        model="tts",
        canary="canary",
        steps=[5, 25, 50, 100],
        interval_s=INTERVAL,
        gates=Gates.model_validate({"min_requests": 10, **gates}),
    )


def weights(cp: ControlPlane, model: str = "tts") -> dict[str, int]:
    return {s.backend: s.weight for s in cp.head.state.models[model].splits}


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.005)
