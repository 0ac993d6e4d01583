"""Envoy's metrics_service sink, received on the control plane's gRPC (xDS) server.

`MetricsReceiver.handler()` is a generic handler for
/envoy.service.metrics.v3.MetricsService/StreamMetrics, a client stream: Envoy opens it once
and sends one StreamMetricsMessage per stats flush, naming its node only in the first.
`EnvoyMetricsSource` answers the `MetricsSource` questions from what was received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from control_plane.metrics.errors import DecodeError
from control_plane.metrics.flush import parse_flush
from control_plane.metrics.source import WindowStats
from control_plane.metrics.window import FleetWindow, NodeReport

log = logging.getLogger(__name__)

METRICS_SERVICE = "envoy.service.metrics.v3.MetricsService"
STREAM_METRICS = "StreamMetrics"

# The decode is on the event loop that also serves xDS and the admin API: watch its cost.
_DECODE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def _identity(data: bytes) -> bytes:
    return data


class _ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.flushes = Counter(
            "ttsgw_metrics_flushes_total", "metrics_service flushes received.", registry=registry
        )
        self.bytes = Counter(
            "ttsgw_metrics_flush_bytes_total",
            "Bytes of metrics_service flushes received.",
            registry=registry,
        )
        self.errors = Counter(
            "ttsgw_metrics_flush_errors_total",
            "metrics_service flushes that could not be decoded.",
            registry=registry,
        )
        self.decode = Histogram(
            "ttsgw_metrics_decode_seconds",
            "Seconds to decode one metrics_service flush.",
            buckets=_DECODE_BUCKETS,
            registry=registry,
        )


class MetricsReceiver:
    """Decodes each flush and records it in the fleet window under the sender's node id."""

    def __init__(self, window: FleetWindow, registry: CollectorRegistry | None = None) -> None:
        self.window = window
        self._metrics = _ReceiverMetrics(registry if registry is not None else CollectorRegistry())

    def receive(self, node_id: str, data: bytes) -> str:
        """Record one flush; returns the node id to use for the stream's next flushes."""
        started = time.perf_counter()
        try:
            flush = parse_flush(data)
        except DecodeError as exc:
            self._metrics.errors.inc()
            log.warning("dropping a metrics flush from %s: %s", node_id, exc.message)
            return node_id
        self._metrics.decode.observe(time.perf_counter() - started)
        self._metrics.flushes.inc()
        self._metrics.bytes.inc(len(data))
        node_id = flush.node_id or node_id
        self.window.record(node_id, flush)
        return node_id

    async def stream_metrics(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        # Until the identifier arrives (it always leads), the peer address names the stream.
        node_id = context.peer()
        async for data in requests:
            node_id = self.receive(node_id, data)
        return b""  # StreamMetricsResponse has no fields

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            METRICS_SERVICE,
            {
                STREAM_METRICS: grpc.stream_unary_rpc_method_handler(
                    self.stream_metrics,
                    request_deserializer=_identity,
                    response_serializer=_identity,
                )
            },
        )


class EnvoyMetricsSource:
    """`MetricsSource` over the flushes the fleet's Envoys stream to this control plane."""

    def __init__(self, window: FleetWindow) -> None:
        self.window = window

    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats:
        return self.window.stats(cluster, window_s)

    def nodes(self) -> list[NodeReport]:
        return self.window.nodes()

    async def aclose(self) -> None:
        return None
