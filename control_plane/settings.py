"""Settings of the control plane deployable: one class, built in main and passed in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from control_plane.domain import DesiredState, Endpoint, default_state
from control_plane.translator import TracingOptions, TranslatorOptions
from ttsgw_contract.gateway_config import DEFAULT_MESSAGE_TIMEOUT_MS


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTSGW_", extra="ignore")

    state_dir: Path = Path(".ttsgw")
    xds_host: str = "0.0.0.0"
    xds_port: int = 18000
    admin_host: str = "127.0.0.1"
    admin_port: int = 9000
    admin_token: str | None = None
    # The read-only token the gateway filters poll with (ttsgw_contract/roles.py).
    dataplane_token: str | None = None
    route_secret: str | None = None
    # The gateway's response cache, for the admin API's stats and purge; None: no cache.
    redis_url: str | None = None
    # Where rollouts and the stats endpoints read traffic: the Envoys' metrics_service flushes
    # (received on the xDS port), or a Prometheus that scrapes the Envoys.
    metrics_source: Literal["envoy", "prometheus"] = "envoy"
    prometheus_url: str | None = None
    # Must match the Envoys' bootstrap (`ttsgw envoy-bootstrap --stats-flush-interval`); a node
    # silent for several intervals is reported as stale.
    stats_flush_interval_s: float = 2.0
    # How often every worker's /v1/queue is polled for GET /api/v1/queue, and how long one
    # poll may take before that worker is reported unreachable.
    queue_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    queue_poll_timeout_s: float = Field(default=0.5, gt=0, le=30)

    # What the translator bakes into Envoy's config.
    listener_port: int = 10000
    ext_proc_host: str = "127.0.0.1"
    ext_proc_port: int = 18001
    ext_proc_message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS
    access_log_path: str = "/dev/stdout"
    # host:port of the span relay (or any Zipkin v2 collector) Envoy's tracer reports to;
    # None leaves tracing off in Envoy. See docs/tracing.md.
    zipkin_collector: str | None = None

    # First start only: the default backends point at the local workers (or, in
    # docker-compose, at the worker services by name).
    seed_defaults: bool = True
    espeak_host: str = "127.0.0.1"
    espeak_port: int = 8101
    cosyvoice3_host: str = "127.0.0.1"
    cosyvoice3_port: int = 8102

    @model_validator(mode="after")
    def _prometheus_needs_url(self) -> ControlPlaneSettings:
        if self.metrics_source == "prometheus" and not self.prometheus_url:
            raise ValueError("metrics_source 'prometheus' needs TTSGW_PROMETHEUS_URL")
        return self

    @model_validator(mode="after")
    def _collector_is_host_port(self) -> ControlPlaneSettings:
        if self.zipkin_collector is not None:
            host, _, port = self.zipkin_collector.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("zipkin_collector must be HOST:PORT, e.g. 127.0.0.1:9412")
        return self

    def tracing_options(self) -> TracingOptions | None:
        if self.zipkin_collector is None:
            return None
        host, _, port = self.zipkin_collector.rpartition(":")
        return TracingOptions(collector_host=host.strip("[]"), collector_port=int(port))

    @property
    def db_path(self) -> Path:
        return self.state_dir / "revisions.db"

    def seed_state(self) -> DesiredState | None:
        if not self.seed_defaults:
            return None
        return default_state(
            Endpoint(host=self.espeak_host, port=self.espeak_port),
            Endpoint(host=self.cosyvoice3_host, port=self.cosyvoice3_port),
        )

    def translator_options(self) -> TranslatorOptions:
        return TranslatorOptions(
            listener_port=self.listener_port,
            ext_proc_host=self.ext_proc_host,
            ext_proc_port=self.ext_proc_port,
            ext_proc_message_timeout_ms=self.ext_proc_message_timeout_ms,
            access_log_path=self.access_log_path,
            route_secret=self.resolve_route_secret(),
            tracing=self.tracing_options(),
        )

    def resolve_admin_token(self) -> str:
        """TTSGW_ADMIN_TOKEN wins; otherwise DIR/admin-token, created once (mode 0600)."""
        return self.admin_token or self._state_secret("admin-token")

    def resolve_dataplane_token(self) -> str:
        """TTSGW_DATAPLANE_TOKEN wins; otherwise DIR/dataplane-token, created once (mode 0600)."""
        return self.dataplane_token or self._state_secret("dataplane-token")

    def resolve_route_secret(self) -> str:
        """The filter's mark that HIGH routes match; stable, so restarts push no new routes."""
        return self.route_secret or self._state_secret("route-secret")

    def _state_secret(self, name: str) -> str:
        path = self.state_dir / name
        if path.exists():
            return path.read_text().strip()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(value + "\n")
        return value
