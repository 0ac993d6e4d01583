"""Prometheus metrics of the xDS server, registered on the registry the caller serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Convergence is measured to the ACK; Envoy ACKs within milliseconds on a quiet box, but a
# listener drain or a slow cluster warm-up can take seconds.
_CONVERGENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class XdsMetrics:
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
