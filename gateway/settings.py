"""Settings of the gateway filter deployable (``ttsgw ext-proc``), read from ``TTSGW_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import StartupError


class GatewaySettings(BaseSettings):
    """Built once in ``main`` and passed down; nothing imports it as a global."""

    model_config = SettingsConfigDict(env_prefix="TTSGW_", extra="ignore")

    ext_proc_host: str = "0.0.0.0"
    ext_proc_port: int = Field(default=18001, ge=0, le=65535)
    control_plane_url: str = "http://127.0.0.1:9000"
    # The control plane's read-only dataplane token (ttsgw_contract/roles.py); the filter
    # never holds the admin token.
    control_plane_token: str | None = None
    control_plane_token_file: Path | None = None
    # 0 disables the /metrics + /healthz listener.
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # How long one long-poll to the control plane may be held open, and the cap on the
    # retry backoff while it is unreachable.
    config_poll_timeout_s: float = Field(default=30.0, gt=0, le=300)
    config_retry_max_s: float = Field(default=5.0, gt=0, le=60)
    # The response cache; None turns it off (responses then never reach the filter).
    redis_url: str | None = None
    # What one Redis call may add to a request before the cache is bypassed.
    cache_op_timeout_s: float = Field(default=0.05, gt=0, le=5)
    cache_connect_timeout_s: float = Field(default=0.2, gt=0, le=10)
    # How long an identical request waits for the one already at the backend. The stream
    # loop extends Envoy's message timer while it waits (override_message_timeout, up to
    # the translator's max_message_timeout of 60 s), so this must stay below that.
    cache_follower_wait_s: float = Field(default=30.0, ge=0, le=55)
    # Where the filter's spans go (Zipkin v2 JSON, normally the span relay); None: no spans.
    # The sampling knobs are TTSGW_TRACING_* (ttsgw_common.telemetry.settings), shared
    # with the relay.
    zipkin_url: str | None = None
    # GET /v1/queue: how long one copy of the control plane's queue view is served, and
    # how long fetching it may take (it must fit in Envoy's 500 ms message timeout).
    queue_cache_ttl_s: float = Field(default=1.0, gt=0, le=60)
    queue_fetch_timeout_s: float = Field(default=0.3, gt=0, le=0.45)

    def resolved_control_plane_token(self) -> str | None:
        """The token file wins over the inline token, so a rotated file is picked up on restart."""
        if self.control_plane_token_file is not None:
            try:
                token = self.control_plane_token_file.read_text().strip()
            except OSError as exc:
                raise StartupError(
                    "cannot read control plane token file "
                    f"{self.control_plane_token_file}: {exc.strerror}"
                ) from exc
            return token or None
        return self.control_plane_token
