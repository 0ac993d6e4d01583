"""The revision store: every accepted write becomes an immutable, numbered revision.

SQLite in WAL mode is the default because the control plane is a single writer per
state dir, needs durability across SIGKILL, and must run with nothing else installed.
Optimistic concurrency: ``commit`` takes the head the writer read; if another writer
got there first the commit fails with ``PreconditionFailedError`` instead of silently
overwriting their change.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from control_plane.domain import DesiredState
from control_plane.errors import NotFoundError, PreconditionFailedError, StoreError
from control_plane.sqlite import open_database


@dataclass(frozen=True)
class Revision:
    number: int
    created_at: str
    author: str
    message: str
    state: DesiredState

    def summary(self) -> dict[str, object]:
        return {
            "revision": self.number,
            "created_at": self.created_at,
            "author": self.author,
            "message": self.message,
        }


class RevisionStore(Protocol):
    def head(self) -> Revision | None: ...

    def get(self, number: int) -> Revision: ...

    def list(self, *, limit: int = 50, before: int | None = None) -> list[Revision]: ...

    def commit(
        self, state: DesiredState, *, author: str, message: str, expected_head: int | None
    ) -> Revision: ...

    def close(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_head(current: int | None, expected: int | None) -> None:
    """Raise PreconditionFailedError (412) unless the head is still the one the writer read."""
    if current != expected:
        raise PreconditionFailedError(
            f"revision {expected} is no longer the head (head is {current}); "
            "re-read the state and retry"
        )


class SQLiteRevisionStore:
    """Revisions in one SQLite table; rows are only ever inserted."""

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS revisions (
            number     INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            author     TEXT NOT NULL,
            message    TEXT NOT NULL,
            state_json TEXT NOT NULL
        )
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_database(path, [self._SCHEMA], what="revision store")
        self._lock = threading.Lock()

    @staticmethod
    def _row(row: tuple[int, str, str, str, str]) -> Revision:
        number, created_at, author, message, state_json = row
        return Revision(
            number=number,
            created_at=created_at,
            author=author,
            message=message,
            state=DesiredState.model_validate_json(state_json),
        )

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Revision]:
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"revision store read failed: {exc}") from exc
        return [self._row(r) for r in rows]

    def head(self) -> Revision | None:
        rows = self._query("SELECT * FROM revisions ORDER BY number DESC LIMIT 1")
        return rows[0] if rows else None

    def get(self, number: int) -> Revision:
        rows = self._query("SELECT * FROM revisions WHERE number = ?", (number,))
        if not rows:
            raise NotFoundError(f"revision {number} does not exist")
        return rows[0]

    def list(self, *, limit: int = 50, before: int | None = None) -> list[Revision]:
        upper = before if before is not None else 2**62
        return self._query(
            "SELECT * FROM revisions WHERE number < ? ORDER BY number DESC LIMIT ?",
            (upper, limit),
        )

    def commit(
        self, state: DesiredState, *, author: str, message: str, expected_head: int | None
    ) -> Revision:
        created_at = _now()
        try:
            with self._lock:
                # BEGIN IMMEDIATE takes the write lock up front, so the head check and
                # the insert are atomic even against another process on the same file.
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    current = self._db.execute("SELECT MAX(number) FROM revisions").fetchone()[0]
                    check_head(current, expected_head)
                    number = (current or 0) + 1
                    self._db.execute(
                        "INSERT INTO revisions VALUES (?, ?, ?, ?, ?)",
                        (number, created_at, author, message, state.model_dump_json()),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"revision store write failed: {exc}") from exc
        return Revision(number, created_at, author, message, state)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class InMemoryRevisionStore:
    """Test fake with the same semantics as the SQLite store, minus durability."""

    def __init__(self) -> None:
        self._revisions: list[Revision] = []

    def head(self) -> Revision | None:
        return self._revisions[-1] if self._revisions else None

    def get(self, number: int) -> Revision:
        if not 1 <= number <= len(self._revisions):
            raise NotFoundError(f"revision {number} does not exist")
        return self._revisions[number - 1]

    def list(self, *, limit: int = 50, before: int | None = None) -> list[Revision]:
        upper = before if before is not None else len(self._revisions) + 1
        return [r for r in reversed(self._revisions) if r.number < upper][:limit]

    def commit(
        self, state: DesiredState, *, author: str, message: str, expected_head: int | None
    ) -> Revision:
        head = self.head()
        check_head(head.number if head else None, expected_head)
        revision = Revision(len(self._revisions) + 1, _now(), author, message, state)
        self._revisions.append(revision)
        return revision

    def close(self) -> None:
        return None
