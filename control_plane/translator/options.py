"""The knobs of the translation that are not part of the desired state: ports, names, timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from ttsgw_contract.gateway_config import DEFAULT_MESSAGE_TIMEOUT_MS

# The control plane's own clusters use underscores, which backend names cannot (domain.Name).
EXT_PROC_CLUSTER = "ttsgw_ext_proc"
# Where Envoy's Zipkin tracer sends its spans (the span relay, see docs/tracing.md).
ZIPKIN_CLUSTER = "ttsgw_zipkin"
HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
STAT_PREFIX = "ttsgw"
VIRTUAL_HOST = "ttsgw"


@dataclass(frozen=True)
class TracingOptions:
    """Envoy's Zipkin tracer: where spans go and how many requests Envoy traces.

    The percentage stays at 100 with the span relay: the relay keeps errors and slow
    requests whatever the ratio, which it can only do if Envoy reported them.
    """

    collector_host: str = "127.0.0.1"
    collector_port: int = 9412
    collector_endpoint: str = "/api/v2/spans"
    sampling_percent: float = 100.0


@dataclass(frozen=True)
class TranslatorOptions:
    listener_address: str = "0.0.0.0"
    listener_port: int = 10000
    ext_proc_host: str = "127.0.0.1"
    ext_proc_port: int = 18001
    # Chosen in the contract rather than inherited from ext_proc (DEFAULT_MESSAGE_TIMEOUT_MS).
    ext_proc_message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS
    # How far the filter may extend one message's timer (override_message_timeout) when
    # it knowingly waits, e.g. for another request's synthesis to fill the cache.
    ext_proc_max_message_timeout_ms: int = 60_000
    # The gateway keeps serving when the filter is down, only without cache and validation.
    ext_proc_failure_mode_allow: bool = True
    access_log_path: str = "/dev/stdout"
    # The value the filter stamps on requests it handled (x-tts-filtered); HIGH routes
    # match it. Empty: any mark matches (tests); the control plane always sets one.
    route_secret: str = ""
    route_config_name: str = "ttsgw_routes"
    listener_name: str = "ttsgw_listener"
    # Envoy's Zipkin tracer sends its spans here; None (the default) turns tracing off.
    tracing: TracingOptions | None = None
