"""The snapshot cache: the one current config for the whole fleet, and a way to await the next."""

from __future__ import annotations

from typing import Protocol

from control_plane.signals import ChangeSignal
from control_plane.xds.snapshot import Snapshot


class SnapshotSource(Protocol):
    """What an ADS stream needs from the cache; tests fake it."""

    def snapshot(self) -> Snapshot | None: ...

    async def wait_for_change(self, version: str | None) -> Snapshot:
        """Return the current snapshot as soon as its version differs from `version`."""
        ...


class SnapshotCache:
    """Holds the current snapshot; every Envoy gets the same config (no per-node variants)."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._changed = ChangeSignal()

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> bool:
        """Publish `snapshot` to every stream. Returns False when its version is already current.

        Raises InconsistentSnapshotError (and publishes nothing) if it references missing resources.
        """
        snapshot.consistent()
        if self._snapshot is not None and self._snapshot.version == snapshot.version:
            return False
        self._snapshot = snapshot
        self._changed.notify()
        return True

    async def wait_for_change(self, version: str | None) -> Snapshot:
        while self._snapshot is None or self._snapshot.version == version:
            await self._changed.wait()
        return self._snapshot
