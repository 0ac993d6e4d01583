"""TracingSettings: the sampling knobs every emitter and the relay share, and the relay's own.

Read from ``TTSGW_TRACING_*``. The ratio and the slow threshold must be the same in every
process of a gateway (``ttsgw up`` and the compose file pass the same environment), since
each emitter decides locally with the same hash the relay uses.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TracingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTSGW_TRACING_", extra="ignore")

    # Share of ordinary traces kept; errors and slow requests are kept regardless.
    sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # A request whose root span (Envoy's) took longer than this is always kept.
    slow_threshold_ms: float = Field(default=1000.0, gt=0)

    # --- the span relay (`ttsgw span-relay`) ---
    relay_host: str = "127.0.0.1"
    relay_port: int = Field(default=9412, ge=0, le=65535)
    # The real collector kept traces go to, e.g. http://zipkin:9411/api/v2/spans. None: the
    # relay decides and counts but forwards nothing.
    zipkin_url: str | None = None
    # After a trace's root span arrives, wait this long for the spans that trail it.
    grace_s: float = Field(default=1.0, ge=0, le=60)
    # A trace whose root never comes is decided this long after its first span.
    max_wait_s: float = Field(default=10.0, gt=0, le=600)
    # Bounds on memory: spans buffered undecided, and spans queued for the collector.
    max_buffered_spans: int = Field(default=100_000, ge=1)
    max_forward_spans: int = Field(default=50_000, ge=1)
    forward_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @property
    def slow_threshold_s(self) -> float:
        return self.slow_threshold_ms / 1000
