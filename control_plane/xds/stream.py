"""The state machine of one ADS stream (state of the world), free of gRPC so tests can drive it.

Rules it keeps (Envoy's xds_protocol.rst):
- a type is answered only after the Envoy subscribed to it; EDS and RDS get only the names asked;
- nonces are fresh per response, and a request echoing any other than the latest is ignored;
- a NACK is recorded and the rejected version is never sent again on this stream;
- pushes go out in make-before-break order (CDS, EDS, LDS, RDS), only for types that changed;
- clusters the Envoy's ACKed routes still use are kept until it ACKs routes that no longer do.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest

from control_plane.xds.callbacks import Callbacks, StreamInfo
from control_plane.xds.errors import ProtocolError
from control_plane.xds.resources import CLUSTER, ENDPOINT, PUSH_ORDER, ROUTE, SHORT_NAMES
from control_plane.xds.snapshot import Snapshot, content_version, encode_body, with_nonce

log = logging.getLogger(__name__)

# For these types an empty resource_names list means "everything" (legacy wildcard).
_WILDCARD_TYPES = frozenset(PUSH_ORDER) - {ENDPOINT, ROUTE}

Names = frozenset[str] | None  # None: wildcard, all resources of the type

# Stream ids are unique per process, like go-control-plane's, so subscribers can key by them.
_stream_ids = itertools.count(1)


@dataclass(frozen=True)
class Push:
    """One DiscoveryResponse ready for the wire: `data` is the fully encoded message."""

    type_url: str
    version: str
    nonce: str
    names: Names
    data: bytes


@dataclass(frozen=True)
class _Kept:
    """A cluster dropped from the snapshot but still referenced by routes the Envoy runs."""

    cluster: bytes
    eds_name: str | None
    assignment: bytes | None


_NEVER = frozenset({"\0never-sent"})  # sent_names before the first send, equal to no real set


@dataclass
class _TypeState:
    subscribed: bool = False
    names: Names = None
    nonce: str | None = None
    sent_version: str | None = None
    sent_names: Names = _NEVER
    sent_at: float = 0.0
    sent_refs: frozenset[str] = frozenset()
    rejected: set[str] = field(default_factory=set)


class AdsStream:
    """Feed it requests and snapshots; it returns the responses to send, in order.

    What happens on the stream is reported to `callbacks` (the fleet view, the metrics).
    """

    def __init__(
        self,
        callbacks: Callbacks,
        snapshot: Snapshot | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream_id = next(_stream_ids)
        self._callbacks = callbacks
        self._snapshot = snapshot
        self._clock = clock
        self._info: StreamInfo | None = None
        self._types: dict[str, _TypeState] = {}
        self._nonce = 0
        self._acked_refs: frozenset[str] = frozenset()
        self._inflight_refs: frozenset[str] = frozenset()
        self._kept: dict[str, _Kept] = {}
        self._views: dict[str, tuple[str, dict[str, bytes]]] = {}

    @property
    def snapshot_version(self) -> str | None:
        return None if self._snapshot is None else self._snapshot.version

    @property
    def node_id(self) -> str | None:
        return None if self._info is None else self._info.node_id

    @property
    def kept_clusters(self) -> frozenset[str]:
        return frozenset(self._kept)

    def on_request(self, request: DiscoveryRequest) -> list[Push]:
        if self._info is None:
            self._open(request)
        type_url = request.type_url
        state = self._types.setdefault(type_url, _TypeState())
        affected = {type_url}
        if request.response_nonce:
            if request.response_nonce != state.nonce:
                return []  # stale: answers a response that has been superseded
            if request.HasField("error_detail"):
                self._on_nack(type_url, state, request)
            else:
                affected |= self._on_ack(type_url, state, request)
        else:
            # A request without a nonce opens (or re-opens) a subscription: always answer it.
            state.sent_names = _NEVER
            if request.version_info:
                # Reconnecting Envoys say which version they already run.
                self._callbacks.on_ack(self.stream_id, type_url, request.version_info, None)
        state.names = self._names(type_url, request.resource_names)
        if not state.subscribed:
            state.subscribed = True
            self._callbacks.on_subscribe(self.stream_id, type_url)
        return self._sync(affected)

    def on_snapshot(self, snapshot: Snapshot) -> list[Push]:
        previous, self._snapshot = self._snapshot, snapshot
        self._keep_referenced(previous, snapshot)
        return self._sync(PUSH_ORDER)

    def close(self) -> None:
        if self._info is not None:
            self._callbacks.on_stream_close(self.stream_id)
            self._info = None

    def _open(self, request: DiscoveryRequest) -> None:
        node = request.node
        if not node.id:
            raise ProtocolError("the first DiscoveryRequest on a stream must carry node.id")
        build = node.user_agent_build_version
        if build.HasField("version"):
            v = build.version
            envoy_version = f"{v.major_number}.{v.minor_number}.{v.patch}"
        else:
            envoy_version = node.user_agent_version
        self._info = StreamInfo(self.stream_id, node.id, node.cluster, envoy_version)
        self._callbacks.on_stream_open(self._info)

    @staticmethod
    def _names(type_url: str, requested: Iterable[str]) -> Names:
        names = frozenset(requested)
        if type_url in _WILDCARD_TYPES and (not names or "*" in names):
            return None
        return names

    def _on_ack(self, type_url: str, state: _TypeState, request: DiscoveryRequest) -> set[str]:
        after_s = self._clock() - state.sent_at
        self._callbacks.on_ack(self.stream_id, type_url, request.version_info, after_s)
        if type_url != ROUTE:
            return set()
        self._acked_refs, self._inflight_refs = state.sent_refs, frozenset()
        return self._release_unreferenced()

    def _on_nack(self, type_url: str, state: _TypeState, request: DiscoveryRequest) -> None:
        assert self._info is not None and state.sent_version is not None
        version, message = state.sent_version, request.error_detail.message
        if version not in state.rejected:
            log.warning(
                "node %s rejected %s version %s: %s",
                self._info.node_id,
                SHORT_NAMES.get(type_url, type_url),
                version,
                message,
            )
        state.rejected.add(version)
        self._callbacks.on_nack(self.stream_id, type_url, version, message)
        if type_url == ROUTE:
            self._inflight_refs = frozenset()  # the Envoy keeps running the ACKed routes

    def _keep_referenced(self, previous: Snapshot | None, current: Snapshot) -> None:
        in_use = self._acked_refs | self._inflight_refs
        new_clusters = current.types[CLUSTER].fields
        kept: dict[str, _Kept] = {}
        for name in sorted(in_use - new_clusters.keys()):
            if name in self._kept:
                kept[name] = self._kept[name]
            elif previous is not None and name in previous.types[CLUSTER].fields:
                eds = previous.eds_names.get(name)
                assignment = previous.types[ENDPOINT].fields.get(eds) if eds else None
                kept[name] = _Kept(previous.types[CLUSTER].fields[name], eds, assignment)
        self._kept = kept
        self._views.clear()

    def _release_unreferenced(self) -> set[str]:
        in_use = self._acked_refs | self._inflight_refs
        kept = {name: k for name, k in self._kept.items() if name in in_use}
        if len(kept) == len(self._kept):
            return set()
        self._kept = kept
        self._views.clear()
        return {CLUSTER, ENDPOINT}

    def _extras(self, type_url: str) -> Mapping[str, bytes]:
        if type_url == CLUSTER:
            return {name: k.cluster for name, k in self._kept.items()}
        if type_url == ENDPOINT:
            return {
                k.eds_name: k.assignment
                for k in self._kept.values()
                if k.eds_name is not None and k.assignment is not None
            }
        return {}

    def _view(self, type_url: str) -> tuple[str, Mapping[str, bytes] | None]:
        """The version to serve and, only when kept clusters are mixed in, the merged fields."""
        assert self._snapshot is not None
        typed = self._snapshot.types[type_url]
        extras = self._extras(type_url)
        if not extras.keys() - typed.fields.keys():
            return typed.version, None
        if type_url not in self._views:
            merged = {**extras, **typed.fields}
            self._views[type_url] = (content_version(merged), merged)
        return self._views[type_url]

    def _sync(self, types: Iterable[str]) -> list[Push]:
        wanted = set(types)
        pushes: list[Push] = []
        if self._snapshot is None:
            return pushes
        for type_url in PUSH_ORDER:
            state = self._types.get(type_url)
            if type_url not in wanted or state is None or not state.subscribed:
                continue
            if state.names is not None and not state.names:
                state.sent_names = state.names  # unsubscribed from everything: nothing to say
                continue
            version, merged = self._view(type_url)
            same_names = state.names == state.sent_names
            if same_names and (version == state.sent_version or version in state.rejected):
                continue
            pushes.append(self._send(type_url, state, version, merged))
        return pushes

    def _send(
        self,
        type_url: str,
        state: _TypeState,
        version: str,
        merged: Mapping[str, bytes] | None,
    ) -> Push:
        assert self._snapshot is not None
        names = state.names
        if merged is None:
            body = self._snapshot.types[type_url].body(names)
        else:
            selected = sorted(merged if names is None else names & merged.keys())
            body = encode_body(version, type_url, (merged[n] for n in selected))
        self._nonce += 1
        nonce = str(self._nonce)
        state.nonce, state.sent_version, state.sent_names = nonce, version, names
        state.sent_at = self._clock()
        if type_url == ROUTE:
            refs = self._snapshot.route_refs
            served = refs.keys() if names is None else names & refs.keys()
            state.sent_refs = frozenset().union(*(refs[n] for n in served))
            self._inflight_refs = state.sent_refs
        self._callbacks.on_response_sent(self.stream_id, type_url, version)
        return Push(type_url, version, nonce, names, with_nonce(body, nonce))
