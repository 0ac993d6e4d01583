"""Builds the gateway filter's grpc.aio server: the router, its processors, metrics, the port."""

from __future__ import annotations

import grpc
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import (
    add_ExternalProcessorServicer_to_server,
)
from prometheus_client import CollectorRegistry

from gateway.config_client import GatewayConfigSource
from gateway.errors import StartupError
from gateway.ext_proc.metrics import CacheMetrics, FilterMetrics
from gateway.ext_proc.queue_processor import QueueView
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.router import Router
from gateway.ext_proc.stream import ExtProcService
from gateway.queue_client import QueueStatusSource
from gateway.settings import GatewaySettings
from ttsgw_common.telemetry.emitter import Telemetry
from ttsgw_contract.cache import CacheStore
from ttsgw_contract.limits import MAX_EXT_PROC_MESSAGE_BYTES

# gRPC enables SO_REUSEPORT by default, which lets a second filter silently share a
# taken port; turning it off makes "port in use" an error we can report.
# gRPC's default 4 MiB receive limit would fail the stream of a speech body Envoy may
# legitimately send (up to MAX_REQUEST_BODY_BYTES); Envoy's side uses the same limit.
_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_EXT_PROC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_EXT_PROC_MESSAGE_BYTES),
]


def build_cache(
    settings: GatewaySettings, store: CacheStore | None, registry: CollectorRegistry
) -> ResponseCache | None:
    if store is None:
        return None
    return ResponseCache(
        store, CacheMetrics(registry), follower_wait_s=settings.cache_follower_wait_s
    )


def create_server(
    settings: GatewaySettings,
    config_source: GatewayConfigSource,
    registry: CollectorRegistry | None = None,
    store: CacheStore | None = None,
    telemetry: Telemetry | None = None,
    queue_source: QueueStatusSource | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server, not yet started, and the port it bound (settings.ext_proc_port, or any if 0).

    ``store`` None means no response cache: speech responses then never reach the filter.
    ``telemetry`` None means no spans (see tracing.py). ``queue_source`` None means
    GET /v1/queue is not answered by the filter (Envoy's 404).
    """
    registry = registry or CollectorRegistry()
    metrics = FilterMetrics(registry, config_source)
    cache = build_cache(settings, store, registry)
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    router = Router(cache=cache, queue_view=_queue_view(queue_source))
    add_ExternalProcessorServicer_to_server(
        ExtProcService(config_source, router.select, metrics, telemetry=telemetry), server
    )
    address = f"{_host_for_grpc(settings.ext_proc_host)}:{settings.ext_proc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}: address in use or unavailable")
    return server, port


def _queue_view(source: QueueStatusSource | None) -> QueueView | None:
    return None if source is None else QueueView(source)


def _host_for_grpc(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
