"""The filter's Prometheus metrics, on a registry the server is given (one per server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.config_client import GatewayConfig
from gateway.ext_proc.context import Outcome

# The filter sits on the request path under a 500 ms message timeout; buckets resolve
# the sub-millisecond range the filter should live in and the timeout it must never reach.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class FilterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ttsgw_filter_requests",
            "HTTP requests the gateway filter decided on, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in Outcome:
            self.requests.labels(outcome.value)
        self.duration = Histogram(
            "ttsgw_filter_duration_seconds",
            "Time the filter spent on one ext_proc message, by phase.",
            ["phase"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.config_revision = Gauge(
            "ttsgw_filter_config_revision",
            "Revision of the gateway-config the filter routes with; -1 before the first.",
            registry=registry,
        )
        self.config_revision.set(-1)
        self.config_models = Gauge(
            "ttsgw_filter_config_models",
            "Number of models in the gateway-config the filter routes with.",
            registry=registry,
        )

    def record(self, outcome: Outcome) -> None:
        self.requests.labels(outcome.value).inc()

    def observe_config(self, config: GatewayConfig | None) -> None:
        if config is None:
            return
        self.config_revision.set(config.revision)
        self.config_models.set(len(config.models))
