"""An immutable, content-versioned snapshot of the fleet's Envoy config, encoded once for the wire.

Every resource is serialized (deterministically) and packed into an `Any` exactly once, when the
snapshot is built; every Envoy stream then shares those bytes. `TypeSnapshot.body()` goes one step
further and pre-encodes a whole DiscoveryResponse minus its nonce, so a send only appends the nonce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from google.protobuf.any_pb2 import Any
from google.protobuf.message import Message

from control_plane.errors import InconsistentSnapshotError
from control_plane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SHORT_NAMES,
    Resources,
)

# DiscoveryResponse field tags (field number << 3 | wire type 2, length-delimited).
_TAG_VERSION_INFO = b"\x0a"  # 1: version_info
_TAG_RESOURCES = b"\x12"  # 2: resources (repeated Any)
_TAG_TYPE_URL = b"\x22"  # 4: type_url
_TAG_NONCE = b"\x2a"  # 5: nonce

# Bodies are memoized per requested name set; Envoy fleets ask for a handful of distinct sets.
_MAX_MEMO_BODIES = 64


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def encode_body(version: str, type_url: str, fields: Iterable[bytes]) -> bytes:
    """A DiscoveryResponse without its nonce; `fields` are pre-encoded `resources` entries."""
    return b"".join(
        (
            _len_field(_TAG_VERSION_INFO, version.encode()),
            *fields,
            _len_field(_TAG_TYPE_URL, type_url.encode()),
        )
    )


def with_nonce(body: bytes, nonce: str) -> bytes:
    """Append the nonce; protobuf allows fields in any order, so the body is never re-encoded."""
    return body + _len_field(_TAG_NONCE, nonce.encode())


def content_version(fields: Mapping[str, bytes]) -> str:
    """A short hash of a set of encoded resources, independent of insertion order."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(fields):
        encoded_name = name.encode()
        digest.update(_varint(len(encoded_name)) + encoded_name)
        digest.update(_varint(len(fields[name])) + fields[name])
    return digest.hexdigest()


def resource_name(message: Message) -> str:
    if isinstance(message, ClusterLoadAssignment):
        return message.cluster_name
    return message.name  # type: ignore[attr-defined, no-any-return]


@dataclass(frozen=True, eq=False)
class TypeSnapshot:
    """The resources of one type URL: messages by name, their wire bytes, and a content version."""

    type_url: str
    version: str
    messages: Mapping[str, Message]
    fields: Mapping[str, bytes]  # name -> encoded `resources` entry (tag + length + Any)
    _bodies: dict[frozenset[str] | None, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, type_url: str, messages: Iterable[Message]) -> TypeSnapshot:
        by_name: dict[str, Message] = {}
        fields: dict[str, bytes] = {}
        for message in messages:
            name = resource_name(message)
            if name in by_name:
                raise InconsistentSnapshotError(
                    f"duplicate {SHORT_NAMES[type_url]} resource name {name!r}"
                )
            packed = Any(type_url=type_url, value=message.SerializeToString(deterministic=True))
            by_name[name] = message
            fields[name] = _len_field(_TAG_RESOURCES, packed.SerializeToString(deterministic=True))
        return cls(
            type_url=type_url,
            version=content_version(fields),
            messages=MappingProxyType(by_name),
            fields=MappingProxyType(fields),
        )

    def body(self, names: frozenset[str] | None) -> bytes:
        """The response body for a subscription: all resources (None) or only those named."""
        cached = self._bodies.get(names)
        if cached is None:
            selected = sorted(self.fields) if names is None else sorted(names & self.fields.keys())
            cached = encode_body(self.version, self.type_url, (self.fields[n] for n in selected))
            if len(self._bodies) >= _MAX_MEMO_BODIES:
                self._bodies.clear()
            self._bodies[names] = cached
        return cached


def _route_refs(route: RouteConfiguration) -> frozenset[str]:
    refs: set[str] = set()
    for vhost in route.virtual_hosts:
        for entry in vhost.routes:
            if not entry.HasField("route"):
                continue
            which = entry.route.WhichOneof("cluster_specifier")
            if which == "cluster":
                refs.add(entry.route.cluster)
            elif which == "weighted_clusters":
                refs.update(c.name for c in entry.route.weighted_clusters.clusters)
    return frozenset(refs)


def _listener_rds_names(listener: Listener) -> set[str]:
    names: set[str] = set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            config = network_filter.typed_config
            if not config.Is(HttpConnectionManager.DESCRIPTOR):
                continue
            hcm = HttpConnectionManager()
            config.Unpack(hcm)
            if hcm.HasField("rds"):
                names.add(hcm.rds.route_config_name)
    return names


def eds_name(cluster: Cluster) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster asks for, or None for other cluster types."""
    if cluster.WhichOneof("cluster_discovery_type") != "type" or cluster.type != Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or cluster.name


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One complete, immutable config for the fleet. Build with `Snapshot.build(resources)`."""

    types: Mapping[str, TypeSnapshot]
    version: str
    # route config name -> cluster names its routes send to
    route_refs: Mapping[str, frozenset[str]]
    # cluster name -> ClusterLoadAssignment name (EDS clusters only)
    eds_names: Mapping[str, str]
    # What it was built from, so the next build can reuse the types that did not change.
    resources: Resources

    @classmethod
    def build(cls, resources: Resources, previous: Snapshot | None = None) -> Snapshot:
        """Encode `resources`; a type whose message tuple is `previous`'s own is reused as is.

        Raises InconsistentSnapshotError if a resource references one that is missing.

        A weight change re-translates only the routes and passes the other tuples through
        unchanged, so at 1,000 backends it skips re-encoding every cluster.
        """
        before = previous.resources.by_type() if previous is not None else {}
        types = {
            type_url: (
                previous.types[type_url]
                if previous is not None and before.get(type_url) is messages
                else TypeSnapshot.build(type_url, messages)  # type: ignore[arg-type]
            )
            for type_url, messages in resources.by_type().items()
        }
        overall = hashlib.blake2b(digest_size=8)
        for type_url in PUSH_ORDER:
            overall.update(f"{type_url}={types[type_url].version};".encode())
        route_refs = {r.name: _route_refs(r) for r in resources.routes}
        eds_names = {c.name: n for c in resources.clusters if (n := eds_name(c)) is not None}
        snapshot = cls(
            types=MappingProxyType(types),
            version=overall.hexdigest(),
            route_refs=MappingProxyType(route_refs),
            eds_names=MappingProxyType(eds_names),
            resources=resources,
        )
        # The one consistency check: every snapshot that exists can be pushed.
        snapshot.consistent()
        return snapshot

    @property
    def versions(self) -> dict[str, str]:
        """Per type URL version, the argument `Fleet.wait_for_ack` expects."""
        return {type_url: t.version for type_url, t in self.types.items()}

    def consistent(self) -> None:
        """Raise InconsistentSnapshotError if any resource references one that is missing."""
        clusters = self.types[CLUSTER].messages
        endpoints = self.types[ENDPOINT].messages
        routes = self.types[ROUTE].messages
        for route_name, refs in sorted(self.route_refs.items()):
            missing = sorted(refs - clusters.keys())
            if missing:
                raise InconsistentSnapshotError(
                    f"route config {route_name!r} references missing clusters {missing}"
                )
        for cluster_name, assignment in sorted(self.eds_names.items()):
            if assignment not in endpoints:
                raise InconsistentSnapshotError(
                    f"EDS cluster {cluster_name!r} has no ClusterLoadAssignment {assignment!r}"
                )
        for listener_name, listener in sorted(self.types[LISTENER].messages.items()):
            for rds in sorted(_listener_rds_names(listener)):  # type: ignore[arg-type]
                if rds not in routes:
                    raise InconsistentSnapshotError(
                        f"listener {listener_name!r} uses missing route config {rds!r}"
                    )
