"""The snapshot cache: the one current config for the whole fleet, and a way to await the next."""

from __future__ import annotations

import time
from typing import Protocol

from control_plane.signals import ChangeSignal
from control_plane.xds.snapshot import Snapshot


class SnapshotSource(Protocol):
    """What an ADS stream needs from the cache; tests fake it."""

    def snapshot(self) -> Snapshot | None: ...

    async def wait_for_change(self, version: str | None) -> Snapshot:
        """Return the current snapshot as soon as its version differs from `version`."""
        ...

    def published_at(self, version: str) -> float | None:
        """When (`time.monotonic()`) `version` became current; None if it is not current."""
        ...


class SnapshotCache:
    """Holds the current snapshot; every Envoy gets the same config (no per-node variants)."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._published_at = 0.0
        self._changed = ChangeSignal()

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> bool:
        """Publish `snapshot` to every stream. Returns False when its version is already current.

        `Snapshot.build` refused it already if it referenced missing resources.
        """
        if self._snapshot is not None and self._snapshot.version == snapshot.version:
            return False
        self._snapshot = snapshot
        self._published_at = time.monotonic()
        self._changed.notify()
        return True

    def published_at(self, version: str) -> float | None:
        current = self._snapshot
        return self._published_at if current is not None and current.version == version else None

    async def wait_for_change(self, version: str | None) -> Snapshot:
        while self._snapshot is None or self._snapshot.version == version:
            await self._changed.wait()
        return self._snapshot
