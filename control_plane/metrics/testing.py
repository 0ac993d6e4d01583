"""Envoy-shaped metrics_service flushes built with envoy-data-plane, for tests and benchmarks.

The reference encoder is betterproto2's generated StreamMetricsMessage (the same schema
Envoy sends), so the hand-rolled decoder is checked against an independent implementation.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic.warnings import PydanticDeprecatedSince212

# envoy-data-plane's generated models use a pydantic idiom deprecated in 2.12; the warning
# is theirs, raised once at import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=PydanticDeprecatedSince212)
    from envoy_data_plane.envoy.config.core.v3 import Node
    from envoy_data_plane.envoy.service.metrics.v3 import (
        StreamMetricsMessage,
        StreamMetricsMessageIdentifier,
    )
    from envoy_data_plane.io.prometheus.client import (
        Bucket,
        Counter,
        Gauge,
        Histogram,
        Metric,
        MetricFamily,
        MetricType,
    )

__all__ = [
    "StreamMetricsMessage",
    "Traffic",
    "cluster_families",
    "envoy_flush",
    "server_families",
]

DEFAULT_BOUNDS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


_UNFILTERED_COUNTERS = (
    "upstream_cx_total",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_tx_bytes_total",
    "upstream_rq_pending_total",
    "membership_change",
    "default.total_match_count",
)
_UNFILTERED_GAUGES = (
    "membership_total",
    "membership_healthy",
    "upstream_cx_active",
    "upstream_rq_active",
    "circuit_breakers.default.rq_open",
    "warming_state",
)


@dataclass(frozen=True)
class Traffic:
    """One cluster's traffic in one interval: responses by class and latencies in ms."""

    by_class: Mapping[str, int]  # {"2xx": 90, "5xx": 10}
    latencies_ms: Sequence[float] = ()
    bounds: Sequence[float] = DEFAULT_BOUNDS


def _counter(name: str, value: float) -> MetricFamily:
    return MetricFamily(
        name=name, type=MetricType.COUNTER, metric=[Metric(counter=Counter(value=value))]
    )


def _histogram(name: str, traffic: Traffic) -> MetricFamily:
    buckets = [
        Bucket(
            upper_bound=float(b), cumulative_count=sum(1 for v in traffic.latencies_ms if v <= b)
        )
        for b in traffic.bounds
    ]
    h = Histogram(
        sample_count=len(traffic.latencies_ms),
        sample_sum=float(sum(traffic.latencies_ms)),
        bucket=buckets,
    )
    return MetricFamily(name=name, type=MetricType.HISTOGRAM, metric=[Metric(histogram=h)])


def cluster_families(
    cluster: str, traffic: Traffic, *, unfiltered: bool = False
) -> list[MetricFamily]:
    """What Envoy sends for one cluster; `unfiltered` adds the families a stats matcher cuts."""
    prefix = f"cluster.{cluster}."
    total = sum(traffic.by_class.values())
    families = [
        _counter(prefix + f"upstream_rq_{c}", float(n)) for c, n in traffic.by_class.items()
    ]
    families += [
        _counter(prefix + "upstream_rq_total", float(total)),
        _counter(prefix + "upstream_rq_completed", float(total)),
        _histogram(prefix + "upstream_rq_time", traffic),
    ]
    if unfiltered:
        # Envoy repeats request stats per origin, and reports connection stats and gauges.
        families += [
            _counter(prefix + f"external.upstream_rq_{c}", float(n))
            for c, n in traffic.by_class.items()
        ]
        families.append(_histogram(prefix + "external.upstream_rq_time", traffic))
        families.append(_histogram(prefix + "upstream_cx_connect_ms", traffic))
        for stat in _UNFILTERED_COUNTERS:
            families.append(_counter(prefix + stat, 1.0))
        for stat in _UNFILTERED_GAUGES:
            families.append(
                MetricFamily(
                    name=prefix + stat,
                    type=MetricType.GAUGE,
                    metric=[Metric(gauge=Gauge(value=1.0))],
                )
            )
    return families


def envoy_flush(
    clusters: Mapping[str, Traffic],
    *,
    node_id: str | None = None,
    unfiltered: bool = False,
    extra: Sequence[MetricFamily] = (),
) -> bytes:
    """One StreamMetricsMessage as Envoy's sink sends it; the node only on a stream's first."""
    families = list(extra)
    for name, traffic in clusters.items():
        families += cluster_families(name, traffic, unfiltered=unfiltered)
    message = StreamMetricsMessage(envoy_metrics=families)
    if node_id is not None:
        message.identifier = StreamMetricsMessageIdentifier(node=Node(id=node_id))
    return bytes(message)


def server_families(count: int = 40) -> list[MetricFamily]:
    """Envoy's own fixed-size families (server.*, listener_manager.*), which the decoder skips."""
    return [
        MetricFamily(
            name=f"server.stat_{i}", type=MetricType.GAUGE, metric=[Metric(gauge=Gauge(value=i))]
        )
        for i in range(count)
    ]
