"""Rollouts and their events in SQLite (WAL, synchronous=FULL), so a SIGKILL loses nothing.

A rollout is one row holding its JSON state, with the columns queries need beside it;
events are append-only rows. A state change and the event that explains it are
written in one transaction. The tables may live in the revision store's own file:
they share nothing with it but the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from control_plane.errors import NotFoundError, StoreError
from control_plane.rollouts.model import ACTIVE, Rollout, RolloutEvent, RolloutSpec, Status
from control_plane.sqlite import open_database

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS rollouts (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        model      TEXT NOT NULL,
        status     TEXT NOT NULL,
        state_json TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS rollouts_model ON rollouts (model, status)",
    """
    CREATE TABLE IF NOT EXISTS rollout_events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        event_json TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS rollout_events_rollout ON rollout_events (rollout_id, id)",
)


class SQLiteRolloutStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_database(path, _SCHEMA, what="rollout store")
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"rollout store write failed: {exc}") from exc

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[str]]:
        try:
            with self._lock:
                rows: list[tuple[str]] = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"rollout store read failed: {exc}") from exc
        return rows

    @staticmethod
    def _insert_event(db: sqlite3.Connection, event: RolloutEvent) -> None:
        # The row id is the event's id; it is put back on read, not stored twice.
        db.execute(
            "INSERT INTO rollout_events (rollout_id, event_json) VALUES (?, ?)",
            (event.rollout_id, event.model_dump_json(exclude={"id"})),
        )

    def _event_rows(self, sql: str, args: tuple[object, ...]) -> list[RolloutEvent]:
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"rollout store read failed: {exc}") from exc
        return [
            RolloutEvent.model_validate_json(body).model_copy(update={"id": row_id})
            for row_id, body in rows
        ]

    def create(
        self,
        spec: RolloutSpec,
        *,
        stable: str,
        status: Status,
        author: str,
        now: float,
        event: RolloutEvent,
    ) -> Rollout:
        """Insert a new rollout (its id comes from the table) with its first event."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO rollouts (model, status, state_json) VALUES (?, ?, '')",
                (spec.model, status),
            )
            assert cursor.lastrowid is not None
            rollout = Rollout(
                id=cursor.lastrowid,
                model=spec.model,
                canary=spec.canary,
                stable=stable,
                spec=spec,
                status=status,
                weight=spec.steps[0],
                author=author,
                message=event.message,
                created_at=now,
                updated_at=now,
            )
            db.execute(
                "UPDATE rollouts SET state_json = ? WHERE id = ?",
                (rollout.model_dump_json(), rollout.id),
            )
            self._insert_event(db, event.model_copy(update={"rollout_id": rollout.id}))
        return rollout

    def save(self, rollout: Rollout, *events: RolloutEvent) -> None:
        """Replace a rollout's state and append the events that explain the change."""
        with self._transaction() as db:
            db.execute(
                "UPDATE rollouts SET status = ?, state_json = ? WHERE id = ?",
                (rollout.status, rollout.model_dump_json(), rollout.id),
            )
            for event in events:
                self._insert_event(db, event)

    def get(self, rollout_id: int) -> Rollout:
        rows = self._rows("SELECT state_json FROM rollouts WHERE id = ?", (rollout_id,))
        if not rows:
            raise NotFoundError(f"rollout {rollout_id} does not exist")
        return Rollout.model_validate_json(rows[0][0])

    def find(
        self, *, model: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Rollout]:
        """Newest first."""
        clauses, args = [], []
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(
            f"SELECT state_json FROM rollouts {where} ORDER BY id DESC LIMIT ?", (*args, limit)
        )
        return [Rollout.model_validate_json(r[0]) for r in rows]

    def active(self) -> list[Rollout]:
        marks = ", ".join("?" for _ in ACTIVE)
        rows = self._rows(
            f"SELECT state_json FROM rollouts WHERE status IN ({marks}) ORDER BY id",
            tuple(sorted(ACTIVE)),
        )
        return [Rollout.model_validate_json(r[0]) for r in rows]

    def events(
        self, rollout_id: int, *, after: int | None = None, limit: int = 1000
    ) -> list[RolloutEvent]:
        """Oldest first; `after` is an event id, for following a rollout live."""
        return self._event_rows(
            "SELECT id, event_json FROM rollout_events WHERE rollout_id = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (rollout_id, after or 0, limit),
        )

    def recent_events(self, rollout_id: int, *, limit: int) -> list[RolloutEvent]:
        """The last `limit` events, oldest first."""
        events = self._event_rows(
            "SELECT id, event_json FROM rollout_events WHERE rollout_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (rollout_id, limit),
        )
        return events[::-1]

    def close(self) -> None:
        with self._lock:
            self._db.close()
