"""Hooks the ADS stream fires as it talks to an Envoy; the fleet view and the metrics subscribe.

Modelled on go-control-plane's ``Callbacks``: the stream state machine only reports what
happened, and each subscriber keeps its own books, so none reaches into another's fields.
Every hook is optional: subclass ``Callbacks`` and override the ones you need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamInfo:
    """Who is on the other end of one ADS stream, from its first DiscoveryRequest's node."""

    stream_id: int
    node_id: str
    cluster: str
    envoy_version: str


class Callbacks:
    """No-op hooks. All run synchronously on the event loop, so they must not block."""

    def on_stream_open(self, stream: StreamInfo) -> None:
        """The stream's Envoy said who it is (its first request)."""

    def on_subscribe(self, stream_id: int, type_url: str) -> None:
        """The Envoy asked for `type_url` for the first time on this stream."""

    def on_response_sent(self, stream_id: int, type_url: str, version: str) -> None:
        """A DiscoveryResponse of `version` was built and handed to the transport."""

    def on_response_written(self, type_url: str, published_at: float | None) -> None:
        """A push of a newly published snapshot is on the wire; `published_at` is monotonic."""

    def on_ack(self, stream_id: int, type_url: str, version: str, after_s: float | None) -> None:
        """The Envoy runs `version`; `after_s` is the time since the send, None when the Envoy
        claimed the version on reconnect (nothing was sent on this stream to time it by)."""

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        """The Envoy rejected `version` and keeps what it ran before."""

    def on_stream_close(self, stream_id: int) -> None:
        """The stream ended; fired only for streams that were opened."""


class Fanout(Callbacks):
    """Forwards every hook to each subscriber in order."""

    def __init__(self, subscribers: Iterable[Callbacks]) -> None:
        self._subscribers = tuple(subscribers)

    def on_stream_open(self, stream: StreamInfo) -> None:
        for s in self._subscribers:
            s.on_stream_open(stream)

    def on_subscribe(self, stream_id: int, type_url: str) -> None:
        for s in self._subscribers:
            s.on_subscribe(stream_id, type_url)

    def on_response_sent(self, stream_id: int, type_url: str, version: str) -> None:
        for s in self._subscribers:
            s.on_response_sent(stream_id, type_url, version)

    def on_response_written(self, type_url: str, published_at: float | None) -> None:
        for s in self._subscribers:
            s.on_response_written(type_url, published_at)

    def on_ack(self, stream_id: int, type_url: str, version: str, after_s: float | None) -> None:
        for s in self._subscribers:
            s.on_ack(stream_id, type_url, version, after_s)

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        for s in self._subscribers:
            s.on_nack(stream_id, type_url, version, message)

    def on_stream_close(self, stream_id: int) -> None:
        for s in self._subscribers:
            s.on_stream_close(stream_id)
