"""The filter's Prometheus metrics, on a registry the server is given (one per server)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config_client import GatewayConfigSource
from gateway.ext_proc.admission import ANONYMOUS
from gateway.ext_proc.processor import Outcome

# Label values for requests without a known model or an API key's class. Both labels come
# from the gateway-config only (a client's unknown model name is never a label value).
UNKNOWN_MODEL = "unknown"
NO_CLASS = "none"

# The filter sits on the request path under a 500 ms message timeout; buckets resolve
# the sub-millisecond range the filter should live in and the timeout it must never reach.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class FilterMetrics:
    def __init__(self, registry: CollectorRegistry, config_source: GatewayConfigSource) -> None:
        self.requests = Counter(
            "ttsgw_filter_requests",
            "HTTP requests the gateway filter decided on, by model, priority class and outcome.",
            ["model", "class", "outcome"],
            registry=registry,
        )
        for outcome in Outcome:
            self.requests.labels(UNKNOWN_MODEL, NO_CLASS, outcome.value)
        self.duration = Histogram(
            "ttsgw_filter_duration_seconds",
            "Time the filter spent on one ext_proc message, by phase.",
            ["phase"],
            buckets=_BUCKETS,
            registry=registry,
        )
        registry.register(_ConfigCollector(config_source))

    def record(
        self, outcome: Outcome, model: str | None = None, priority_class: str | None = None
    ) -> None:
        """Count one decision. Pass only a model the config knows (bounded cardinality)."""
        if priority_class is None or priority_class == ANONYMOUS:
            priority_class = NO_CLASS
        self.requests.labels(model or UNKNOWN_MODEL, priority_class, outcome.value).inc()


class CacheMetrics:
    """The response cache as the filter sees it (Redis's own errors are the store's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ttsgw_cache_requests",
            "Speech requests by model and cache outcome (hit, miss, bypass).",
            ["model", "outcome"],
            registry=registry,
        )
        self.bytes_served = Counter(
            "ttsgw_cache_bytes_served",
            "Audio bytes answered from the cache without a backend.",
            registry=registry,
        )
        self.single_flight_waits = Counter(
            "ttsgw_single_flight_waits",
            "Requests that waited for an identical in-flight request instead of a backend.",
            registry=registry,
        )


class _ConfigCollector(Collector):
    """Reads the config at scrape time, so any GatewayConfigSource works without hooks."""

    def __init__(self, config_source: GatewayConfigSource) -> None:
        self._config_source = config_source

    def collect(self) -> Iterator[Metric]:
        config = self._config_source.current()
        revision = GaugeMetricFamily(
            "ttsgw_filter_config_revision",
            "Revision of the gateway-config the filter routes with; -1 before the first.",
            value=-1 if config is None else config.revision,
        )
        info = GaugeMetricFamily(
            "ttsgw_filter_config_version_info",
            "The gateway-config version the filter routes with (value 1), and its model count.",
            labels=["version", "models"],
        )
        if config is not None:
            info.add_metric([config.version, str(len(config.models))], 1)
        yield revision
        yield info
