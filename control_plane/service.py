"""The control plane's write path: validate a whole new state, store it, translate it, push it.

Order matters. A write is checked (pydantic, the guards, references; translation; snapshot
consistency, in ``Snapshot.build``), each once, before the revision is committed,
and committed before it is pushed, so a rejected write leaves no revision and pushes
nothing, and a pushed config is always one that a restart would reload.
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
from control_plane.gateway_contract import gateway_config
from control_plane.signals import ChangeSignal
from control_plane.store import Revision, RevisionStore, check_head
from control_plane.translator import TranslatorOptions, retranslate, translate
from control_plane.validation import check_references, invalid_state, validated
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.snapshot import Snapshot
from ttsgw_contract.gateway_config import FilterTimeouts, GatewayConfig

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
    try:
        proposed = mutate(state)
    except ValidationError as exc:
        raise invalid_state(exc) from exc
    return validated(proposed)


class ControlPlane:
    """Owns the head revision and keeps the xDS cache and the gateway contract in step with it."""

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
        self._timeouts = FilterTimeouts(
            message_timeout_ms=options.ext_proc_message_timeout_ms,
            max_message_timeout_ms=options.ext_proc_max_message_timeout_ms,
        )
        self._lock = asyncio.Lock()
        self._guards: list[Guard] = []
        self._head: Revision | None = None
        self._snapshot: Snapshot | None = None
        self._gateway: GatewayConfig | None = None
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
        """Translate an already validated state; `Snapshot.build` checks its consistency."""
        if self._head is None or self._snapshot is None:
            return Snapshot.build(translate(state, self._options))
        previous = self._snapshot
        resources = retranslate(state, self._options, self._head.state, previous.resources)
        return Snapshot.build(resources, previous)

    async def _commit(
        self, state: DesiredState, *, author: str, message: str, expected_head: int | None
    ) -> Revision:
        # SQLite's fsync must not stall every stream on the event loop; the caller's lock
        # keeps the head this commit expects from moving meanwhile.
        return await asyncio.to_thread(
            self._store.commit, state, author=author, message=message, expected_head=expected_head
        )

    async def start(self, seed: DesiredState | None = None) -> Revision:
        """Load the head revision (seeding an empty store) and publish it."""
        async with self._lock:
            head = await asyncio.to_thread(self._store.head)
            if head is None:
                initial = validated(seed if seed is not None else DesiredState())
                check_references(initial)
                snapshot = self._build(initial)
                head = await self._commit(
                    initial, author="ttsgw", message="initial state", expected_head=None
                )
                log.info("seeded revision %d", head.number)
            else:
                check_references(head.state)  # pydantic checked it as the store read it
                snapshot = self._build(head.state)
            self._publish(head, snapshot)
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

    def _publish(self, revision: Revision, snapshot: Snapshot) -> None:
        self._head, self._snapshot = revision, snapshot
        # Built once per revision here, so long-polling filters only compare versions.
        self._gateway = gateway_config(
            revision.state, revision.number, self._options.route_secret, self._timeouts
        )
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
        """Apply one change atomically; raise before anything is stored if it is invalid.

        Once started, a write runs to its end even if the caller is cancelled (a client
        that hung up): a commit left half-published would leave the head in memory
        behind the store's.
        """
        result, versions, mark = await asyncio.shield(
            self._write(mutate, author=author, message=message, if_match=if_match)
        )
        if wait_acked is None:
            return result
        waited = await self._fleet.wait_for_ack(versions, wait_acked, since=mark)
        return dataclasses.replace(result, converged_s=waited, acked=waited is not None)

    async def _write(
        self, mutate: Mutation, *, author: str, message: str, if_match: int | None
    ) -> tuple[WriteResult, dict[str, str], int | None]:
        """The locked part of `apply`: the result, the versions to wait for, the fleet mark."""
        async with self._lock:
            head = self.head
            if if_match is not None:
                check_head(head.number, if_match)
            new_state = _mutated(mutate, head.state)
            for guard in self._guards:
                guard(head.state, new_state, author)
            check_references(new_state)
            if new_state == head.state:
                snapshot = self.snapshot
                return WriteResult(head, False, snapshot.version), snapshot.versions, None
            snapshot = self._build(new_state)
            revision = await self._commit(
                new_state, author=author, message=message, expected_head=head.number
            )
            # Taken before the push: only ACKs of sends after it prove convergence.
            mark = self._fleet.mark()
            self._publish(revision, snapshot)
            log.info("revision %d by %s: %s", revision.number, author, message)
            return WriteResult(revision, True, snapshot.version), snapshot.versions, mark

    # --- the gateway filter's view: a versioned contract, long-polled -------------

    def gateway_config(self) -> GatewayConfig:
        if self._gateway is None:
            raise RuntimeError("control plane not started")
        return self._gateway

    async def wait_gateway_config(self, after: str | None, timeout: float) -> GatewayConfig | None:
        """The current config if its version differs from ``after``, else wait; None on timeout."""
        waited = await self._changed.wait_until(
            lambda: self.gateway_config().version != after, timeout
        )
        return None if waited is None else self.gateway_config()
