"""The one way the control plane opens its SQLite file: WAL, durable commits, a busy timeout."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from control_plane.errors import StoreError


def open_database(path: Path, schema: Iterable[str], *, what: str) -> sqlite3.Connection:
    """Open (creating) `path` and apply `schema`; StoreError names `what` on failure.

    One connection per store, guarded by the store's own lock, shared across threads:
    reads are tiny and run on the event loop, while commits (an fsync each) run in a
    worker thread (ControlPlane._commit). WAL lets readers run beside the writer;
    synchronous=FULL makes an acknowledged write survive SIGKILL and power loss.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        for statement in schema:
            db.execute(statement)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {what} {path}: {exc}") from exc
    return db
