"""Revision store: numbered immutable revisions, durability, optimistic concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from control_plane.domain import DesiredState, default_state
from control_plane.errors import NotFoundError, PreconditionFailedError
from control_plane.store import InMemoryRevisionStore, RevisionStore, SQLiteRevisionStore


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RevisionStore:
    if request.param == "sqlite":
        return SQLiteRevisionStore(tmp_path / "revisions.db")
    return InMemoryRevisionStore()


def test_commits_are_numbered_and_readable(store: RevisionStore) -> None:
    assert store.head() is None
    first = store.commit(DesiredState(), author="alice", message="empty", expected_head=None)
    second = store.commit(default_state(), author="bob", message="seed", expected_head=1)
    assert (first.number, second.number) == (1, 2)
    head = store.head()
    assert head is not None and head.number == 2 and head.author == "bob"
    assert store.get(1).state == DesiredState()
    assert store.get(2).state == default_state()
    assert [r.number for r in store.list()] == [2, 1]
    assert [r.number for r in store.list(before=2)] == [1]


def test_stale_head_is_rejected_and_changes_nothing(store: RevisionStore) -> None:
    store.commit(DesiredState(), author="a", message="one", expected_head=None)
    store.commit(default_state(), author="a", message="two", expected_head=1)
    with pytest.raises(PreconditionFailedError, match="head is 2"):
        store.commit(DesiredState(), author="late", message="lost update", expected_head=1)
    head = store.head()
    assert head is not None and head.number == 2 and head.message == "two"


def test_missing_revision_is_not_found(store: RevisionStore) -> None:
    with pytest.raises(NotFoundError):
        store.get(7)


def test_sqlite_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "revisions.db"
    store = SQLiteRevisionStore(path)
    store.commit(default_state(), author="a", message="seed", expected_head=None)
    store.close()
    reopened = SQLiteRevisionStore(path)
    head = reopened.head()
    assert head is not None and head.state == default_state()
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_two_processes_worth_of_writers_cannot_lose_an_update(tmp_path: Path) -> None:
    """Two connections race from the same head: exactly one commit wins."""
    path = tmp_path / "revisions.db"
    SQLiteRevisionStore(path).commit(DesiredState(), author="a", message="base", expected_head=None)
    writers = [SQLiteRevisionStore(path) for _ in range(8)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(writers))

    def write(store: SQLiteRevisionStore, i: int) -> None:
        barrier.wait()
        try:
            store.commit(default_state(), author=f"w{i}", message="race", expected_head=1)
            outcomes.append("won")
        except PreconditionFailedError:
            outcomes.append("lost")

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    head = SQLiteRevisionStore(path).head()
    assert head is not None and head.number == 2
