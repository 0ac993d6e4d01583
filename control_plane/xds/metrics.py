"""Prometheus metrics of the xDS server, kept from the ADS streams' callbacks."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control_plane.xds.callbacks import Callbacks, StreamInfo
from control_plane.xds.resources import SHORT_NAMES

# Convergence is measured to the ACK; Envoy ACKs within milliseconds on a quiet box, but a
# listener drain or a slow cluster warm-up can take seconds.
_CONVERGENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A push is in-process work plus one gRPC write: sub-millisecond alone, longer when a
# large fleet's streams queue behind each other on the event loop.
_PUSH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5)  # fmt: skip


class XdsMetrics(Callbacks):
    """Registered on the registry the caller serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pushes = Counter(
            "ttsgw_xds_pushes_total",
            "DiscoveryResponses sent, by type.",
            ["type"],
            registry=registry,
        )
        self.nacks = Counter(
            "ttsgw_xds_nacks_total",
            "DiscoveryResponses an Envoy rejected, by type.",
            ["type"],
            registry=registry,
        )
        self.streams = Gauge(
            "ttsgw_xds_connected_streams",
            "Open ADS streams.",
            registry=registry,
        )
        self.convergence = Histogram(
            "ttsgw_xds_convergence_seconds",
            "Seconds from sending a DiscoveryResponse to the Envoy's ACK of it, by type.",
            ["type"],
            buckets=_CONVERGENCE_BUCKETS,
            registry=registry,
        )
        self.push_latency = Histogram(
            "ttsgw_xds_push_latency_seconds",
            "Seconds from a new snapshot's publication to its DiscoveryResponse being "
            "written to an Envoy's stream, by type.",
            ["type"],
            buckets=_PUSH_BUCKETS,
            registry=registry,
        )
        for short in SHORT_NAMES.values():
            # Every type from the start, so rate() and increase() see the first event.
            for family in (self.pushes, self.nacks, self.convergence, self.push_latency):
                family.labels(short)

    def on_stream_open(self, stream: StreamInfo) -> None:
        self.streams.inc()

    def on_stream_close(self, stream_id: int) -> None:
        self.streams.dec()

    def on_response_sent(self, stream_id: int, type_url: str, version: str) -> None:
        self.pushes.labels(_short(type_url)).inc()

    def on_response_written(self, type_url: str, published_at: float | None) -> None:
        if published_at is not None:
            self.push_latency.labels(_short(type_url)).observe(time.monotonic() - published_at)

    def on_ack(self, stream_id: int, type_url: str, version: str, after_s: float | None) -> None:
        if after_s is not None:
            self.convergence.labels(_short(type_url)).observe(after_s)

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        self.nacks.labels(_short(type_url)).inc()


def _short(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url)
