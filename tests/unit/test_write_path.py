"""The write path: If-Match against the head, commits off the event loop, one check each."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from control_plane.domain import DesiredState, ModelSpec, Split, default_state
from control_plane.errors import PreconditionFailedError
from control_plane.service import ControlPlane, Mutation
from control_plane.store import Revision, SQLiteRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.snapshot import Snapshot


class SlowStore(SQLiteRevisionStore):
    """The real SQLite store, with a commit that blocks like a slow fsync and says where it ran."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.delay_s = 0.0
        self.commit_threads: list[threading.Thread] = []

    def commit(
        self, state: DesiredState, *, author: str, message: str, expected_head: int | None
    ) -> Revision:
        self.commit_threads.append(threading.current_thread())
        threading.Event().wait(self.delay_s)
        return super().commit(state, author=author, message=message, expected_head=expected_head)


@pytest.fixture
async def slow(tmp_path: Path) -> tuple[ControlPlane, SlowStore]:
    store = SlowStore(tmp_path / "revisions.db")
    cp = ControlPlane(store, SnapshotCache(), Fleet(), TranslatorOptions())
    await cp.start(default_state())
    return cp, store


def _weight(weight: int) -> Mutation:
    def mutate(state: DesiredState) -> DesiredState:
        model = ModelSpec(splits=[Split(backend="espeak", weight=weight)])
        return state.model_copy(update={"models": {**state.models, "espeak": model}})

    return mutate


async def test_a_stale_if_match_is_412_naming_the_head_without_touching_the_store(
    slow: tuple[ControlPlane, SlowStore],
) -> None:
    cp, store = slow
    await cp.apply(_weight(5), author="t", message="m")
    commits = len(store.commit_threads)
    with pytest.raises(
        PreconditionFailedError, match=r"revision 1 is no longer the head \(head is 2"
    ):
        await cp.apply(_weight(6), author="t", message="m", if_match=1)
    assert len(store.commit_threads) == commits
    assert cp.head.number == 2


async def test_the_commit_runs_off_the_event_loop(slow: tuple[ControlPlane, SlowStore]) -> None:
    cp, store = slow
    store.delay_s = 0.3
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await cp.apply(_weight(5), author="t", message="m")
    finally:
        ticker.cancel()
    assert store.commit_threads[-1] is not threading.main_thread()
    assert ticks >= 10  # the loop kept running while the commit blocked its thread


async def test_a_cancelled_write_still_publishes_what_it_committed(
    slow: tuple[ControlPlane, SlowStore],
) -> None:
    cp, store = slow
    store.delay_s = 0.2
    write = asyncio.create_task(cp.apply(_weight(5), author="t", message="m"))
    await asyncio.sleep(0.05)  # the commit is under way in its thread
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    for _ in range(500):  # the shielded write finishes on its own
        if cp.head.number == 2:
            break
        await asyncio.sleep(0.01)
    head = store.head()
    assert head is not None and cp.head.number == head.number == 2
    # The next writer sees a head that matches the store's, so it is not refused.
    assert (await cp.apply(_weight(6), author="t", message="m", if_match=2)).revision.number == 3


async def test_each_write_checks_snapshot_consistency_once(
    slow: tuple[ControlPlane, SlowStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    cp, _ = slow
    calls = 0
    consistent = Snapshot.consistent

    def counted(self: Snapshot) -> None:
        nonlocal calls
        calls += 1
        consistent(self)

    monkeypatch.setattr(Snapshot, "consistent", counted)
    await cp.apply(_weight(5), author="t", message="m")
    assert calls == 1
