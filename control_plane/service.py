"""The control plane's write path: validate a whole new state, store it, translate it, push it.

Order matters. A write is checked (pydantic, references, translation and snapshot
consistency) before the revision is committed, and committed before it is pushed, so
a rejected write leaves no revision and pushes nothing, and a pushed config is always
one that a restart would reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from control_plane.domain import DesiredState
from control_plane.errors import InvalidStateError
from control_plane.gateway_contract import gateway_config
from control_plane.signals import ChangeSignal
from control_plane.store import Revision, RevisionStore
from control_plane.translator import TranslatorOptions, retranslate, translate
from control_plane.validation import check_references
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

Mutation = Callable[[DesiredState], DesiredState]
# Called with (current, proposed, author) before a write is accepted; raises (e.g.
# ConflictError) to refuse it. How a running rollout keeps other writers off its model.
Guard = Callable[[DesiredState, DesiredState, str], None]


@dataclass(frozen=True)
class WriteResult:
    revision: Revision
    changed: bool
    snapshot_version: str
    # Seconds from the push until every connected Envoy ACKed (measured to the ACK,
    # not the send); None when not awaited or when the wait timed out (see ``acked``).
    converged_s: float | None = None
    acked: bool | None = None

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "revision": self.revision.number,
            "changed": self.changed,
            "snapshot_version": self.snapshot_version,
        }
        if self.acked is not None:
            body["acked"] = self.acked
            body["converged_ms"] = (
                round(self.converged_s * 1000, 2) if self.converged_s is not None else None
            )
        return body


def _mutated(mutate: Mutation, state: DesiredState) -> DesiredState:
    """Run a mutation and re-validate the whole result (model_copy skips validation)."""
    try:
        return DesiredState.model_validate(mutate(state).model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidStateError(f"{field}: {first['msg']}", field=field or None) from exc


class ControlPlane:
    """Owns the head revision and keeps the xDS cache in step with it."""

    def __init__(
        self,
        store: RevisionStore,
        cache: SnapshotCache,
        fleet: Fleet,
        options: TranslatorOptions,
    ) -> None:
        self._store = store
        self._cache = cache
        self._fleet = fleet
        self._options = options
        self._lock = asyncio.Lock()
        self._guards: list[Guard] = []
        self._head: Revision | None = None
        self._snapshot: Snapshot | None = None
        self._changed = ChangeSignal()

    def add_guard(self, guard: Guard) -> None:
        self._guards.append(guard)

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    @property
    def store(self) -> RevisionStore:
        return self._store

    def _build(self, state: DesiredState) -> Snapshot:
        check_references(state)
        if self._head is None or self._snapshot is None:
            snapshot = Snapshot.build(translate(state, self._options))
        else:
            previous = self._snapshot
            resources = retranslate(state, self._options, self._head.state, previous.resources)
            snapshot = Snapshot.build(resources, previous)
        snapshot.consistent()
        return snapshot

    async def start(self, seed: DesiredState | None = None) -> Revision:
        """Load the head revision (seeding an empty store) and publish it."""
        head = self._store.head()
        if head is None:
            initial = seed if seed is not None else DesiredState()
            self._build(initial)
            head = self._store.commit(
                initial, author="ttsgw", message="initial state", expected_head=None
            )
            log.info("seeded revision %d", head.number)
        await self._publish(head, self._build(head.state))
        return head

    @property
    def head(self) -> Revision:
        if self._head is None:
            raise RuntimeError("control plane not started")
        return self._head

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("control plane not started")
        return self._snapshot

    async def _publish(self, revision: Revision, snapshot: Snapshot) -> None:
        self._head, self._snapshot = revision, snapshot
        self._cache.set_snapshot(snapshot)
        self._changed.notify()

    async def apply(
        self,
        mutate: Mutation,
        *,
        author: str,
        message: str,
        if_match: int | None = None,
        wait_acked: float | None = None,
    ) -> WriteResult:
        """Apply one change atomically; raise before anything is stored if it is invalid."""
        async with self._lock:
            head = self.head
            if if_match is not None and if_match != head.number:
                # Same check the store makes, done early so the error names the head.
                self._store.commit(
                    head.state, author=author, message=message, expected_head=if_match
                )
            new_state = _mutated(mutate, head.state)
            for guard in self._guards:
                guard(head.state, new_state, author)
            if new_state == head.state:
                result = WriteResult(head, changed=False, snapshot_version=self.snapshot.version)
                snapshot, mark = self.snapshot, None
            else:
                snapshot = self._build(new_state)
                revision = self._store.commit(
                    new_state, author=author, message=message, expected_head=head.number
                )
                # Taken before the push: only ACKs of sends after it prove convergence.
                mark = self._fleet.mark()
                await self._publish(revision, snapshot)
                log.info("revision %d by %s: %s", revision.number, author, message)
                result = WriteResult(revision, changed=True, snapshot_version=snapshot.version)
        if wait_acked is None:
            return result
        waited = await self._fleet.wait_for_ack(snapshot.versions, wait_acked, since=mark)
        return dataclasses.replace(result, converged_s=waited, acked=waited is not None)

    # --- the gateway filter's view: a versioned contract, long-polled -------------

    def gateway_config(self) -> dict[str, Any]:
        return gateway_config(self.head.state, self.head.number, self._options.route_secret)

    async def wait_gateway_config(self, after: str | None, timeout: float) -> dict[str, Any] | None:
        """The current config if its version differs from ``after``, else wait; None on timeout."""
        waited = await self._changed.wait_until(
            lambda: self.gateway_config()["version"] != after, timeout
        )
        return None if waited is None else self.gateway_config()
