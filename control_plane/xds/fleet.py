"""The registry of connected Envoys: what each was sent, what it ACKed, and its last NACK."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from control_plane.signals import ChangeSignal
from control_plane.xds.callbacks import Callbacks, StreamInfo
from control_plane.xds.resources import CLUSTER, LISTENER, SHORT_NAMES

# A stream remembers when each of its recent versions was last sent, to order ACKs of content
# hashes; older versions than this can no longer be waited for on that stream.
_SENT_HISTORY = 32

# An ADS Envoy always subscribes to these; EDS and RDS only when its clusters and listeners
# use them, so an unsubscribed EDS or RDS does not hold convergence back.
_ALWAYS_SUBSCRIBED = frozenset({CLUSTER, LISTENER})


@dataclass
class Nack:
    version: str
    message: str
    at: float  # wall clock, seconds since the epoch


@dataclass
class TypeStatus:
    """One type URL on one stream (or, in the public view, on one node)."""

    sent: str | None = None
    acked: str | None = None
    nack: Nack | None = None
    # version -> sequence number of its latest send; ACKs count "at least" by this order
    sent_seq: OrderedDict[str, int] = field(default_factory=OrderedDict)
    acked_seq: int = -1

    def to_public(self) -> dict[str, Any]:
        nack = None
        if self.nack is not None:
            nack = {"version": self.nack.version, "message": self.nack.message, "at": self.nack.at}
        return {"sent": self.sent, "acked": self.acked, "nack": nack}


@dataclass
class _Stream:
    """One ADS stream of one Envoy, as the fleet's callbacks recorded it."""

    info: StreamInfo
    connected_at: float
    subscribed: set[str] = field(default_factory=set)
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

    def has_acked(self, type_url: str, version: str, since: int | None = None) -> bool:
        """True if this stream runs `version` of `type_url`, or ACKed something newer.

        "Newer" means a send made after `since` (a `Fleet.mark()` taken before the
        snapshot holding `version` was published). Without `since`, a send after the last
        send of `version`; that is only sound while `version` is not coming back, since a
        restore re-targets a version whose old send predates what the node runs now.
        """
        if type_url not in self.subscribed:
            return type_url not in _ALWAYS_SUBSCRIBED
        status = self.types.get(type_url)
        if status is None:
            return False
        if status.acked == version and status.sent == version:
            return True
        if since is not None:
            return status.acked_seq >= since
        seq = status.sent_seq.get(version)
        return seq is not None and status.acked_seq >= seq


class Fleet(Callbacks):
    """Connected Envoys by node id, kept from the ADS streams' callbacks.

    Several streams may share a node id; each is counted. Hooks for a stream it never saw
    open are ignored, so a subscriber added late cannot fail a stream.
    """

    def __init__(self) -> None:
        self._streams: dict[int, _Stream] = {}
        self._seq = itertools.count()
        self._changed = ChangeSignal()

    # --- the callbacks ---------------------------------------------------------------

    def on_stream_open(self, stream: StreamInfo) -> None:
        self._streams[stream.stream_id] = _Stream(stream, connected_at=time.time())
        self._changed.notify()

    def on_subscribe(self, stream_id: int, type_url: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None and type_url not in stream.subscribed:
            stream.subscribed.add(type_url)
            self._changed.notify()

    def on_response_sent(self, stream_id: int, type_url: str, version: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        status = stream.type(type_url)
        status.sent = version
        status.sent_seq.pop(version, None)
        status.sent_seq[version] = next(self._seq)
        while len(status.sent_seq) > _SENT_HISTORY:
            status.sent_seq.popitem(last=False)

    def on_ack(self, stream_id: int, type_url: str, version: str, after_s: float | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        status = stream.type(type_url)
        status.acked = version
        status.acked_seq = max(status.acked_seq, status.sent_seq.get(version, -1))
        self._changed.notify()

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.type(type_url).nack = Nack(version=version, message=message, at=time.time())
        self._changed.notify()

    def on_stream_close(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._changed.notify()

    # --- the views -------------------------------------------------------------------

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def node_ids(self) -> set[str]:
        return {s.info.node_id for s in self._streams.values()}

    def mark(self) -> int:
        """A point in send order; take it before publishing a snapshot you will wait for."""
        return next(self._seq)

    def converged(
        self, versions: dict[str, str], *, min_nodes: int = 0, since: int | None = None
    ) -> bool:
        """At least `min_nodes` nodes are connected and every stream ACKed at least `versions`.

        `versions` maps type URL -> version (`Snapshot.versions`). A stream must have ACKed CDS
        and LDS; EDS and RDS count only once it subscribed to them (an Envoy without EDS
        clusters never asks for endpoints).
        """
        if len(self.node_ids()) < min_nodes:
            return False
        return all(
            stream.has_acked(type_url, version, since)
            for stream in self._streams.values()
            for type_url, version in versions.items()
        )

    async def wait_for_ack(
        self,
        versions: dict[str, str],
        timeout: float,
        *,
        min_nodes: int = 0,
        since: int | None = None,
    ) -> float | None:
        """Seconds until every connected node ACKed at least `versions`; None on timeout.

        With no node connected (and `min_nodes` 0) it returns at once.
        """
        return await self._changed.wait_until(
            lambda: self.converged(versions, min_nodes=min_nodes, since=since), timeout
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per node id, for `GET /api/v1/fleet`; the newest stream's view wins."""
        nodes: dict[str, dict[str, Any]] = {}
        for stream in sorted(self._streams.values(), key=lambda s: s.info.stream_id):
            info = stream.info
            node = nodes.setdefault(
                info.node_id,
                {
                    "node_id": info.node_id,
                    "cluster": info.cluster,
                    "envoy_version": info.envoy_version,
                    "connected_at": stream.connected_at,
                    "streams": 0,
                    "types": {},
                },
            )
            node["streams"] += 1
            node["cluster"] = info.cluster
            node["envoy_version"] = info.envoy_version
            for type_url, status in stream.types.items():
                short = SHORT_NAMES.get(type_url, type_url)
                public = status.to_public()
                previous = node["types"].get(short)
                if previous is not None and public["nack"] is None:
                    public["nack"] = previous["nack"]
                node["types"][short] = public
        return sorted(nodes.values(), key=lambda n: n["node_id"])

    to_public = snapshot
