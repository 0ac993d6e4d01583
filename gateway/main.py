"""`ttsgw ext-proc`: serves the gateway filter until SIGINT/SIGTERM; `run(argv)` is testable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.config_client import HttpConfigSource
from gateway.errors import StartupError
from gateway.ext_proc.server import create_server
from gateway.metrics_server import MetricsServer
from gateway.queue_client import HttpQueueStatusSource
from gateway.settings import GatewaySettings
from ttsgw_common.cache.redis_store import RedisCacheStore
from ttsgw_common.telemetry.emitter import Telemetry, setup_tracing
from ttsgw_common.telemetry.settings import TracingSettings
from ttsgw_contract.cache import CacheStore

log = logging.getLogger("gateway")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ttsgw ext-proc",
        description="The gateway filter: Envoy's ext_proc server that routes by the JSON body.",
    )
    parser.add_argument("--host", help="listen address (TTSGW_EXT_PROC_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="gRPC port (TTSGW_EXT_PROC_PORT, default 18001)")
    parser.add_argument("--control-plane-url", help="admin API base URL (TTSGW_CONTROL_PLANE_URL)")
    parser.add_argument(
        "--control-plane-token-file",
        type=Path,
        help="file holding the read-only dataplane token (TTSGW_CONTROL_PLANE_TOKEN_FILE)",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="/metrics + /healthz port, 0 disables (TTSGW_METRICS_PORT)"
    )
    parser.add_argument(
        "--redis-url", help="response cache, e.g. redis://127.0.0.1:6390/0 (TTSGW_REDIS_URL)"
    )
    parser.add_argument(
        "--zipkin-url",
        help="span relay, e.g. http://127.0.0.1:9412/api/v2/spans (TTSGW_ZIPKIN_URL)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """Environment first, then flags that were given."""
    overrides = {
        "ext_proc_host": args.host,
        "ext_proc_port": args.port,
        "control_plane_url": args.control_plane_url,
        "control_plane_token_file": args.control_plane_token_file,
        "metrics_port": args.metrics_port,
        "redis_url": args.redis_url,
        "zipkin_url": args.zipkin_url,
    }
    return GatewaySettings(**{k: v for k, v in overrides.items() if v is not None})


async def serve(settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Run the filter until ``stop`` is set; raises StartupError before serving if it cannot."""
    registry = CollectorRegistry()
    token = settings.resolved_control_plane_token()
    config_source = HttpConfigSource(
        settings.control_plane_url,
        token=token,
        poll_timeout_s=settings.config_poll_timeout_s,
        retry_max_s=settings.config_retry_max_s,
    )
    store = _cache_store(settings, registry)
    telemetry = _telemetry(settings, registry)
    queue_source = HttpQueueStatusSource(
        settings.control_plane_url,
        token=token,
        ttl_s=settings.queue_cache_ttl_s,
        timeout_s=settings.queue_fetch_timeout_s,
    )
    try:
        server, port = create_server(
            settings, config_source, registry, store, telemetry, queue_source=queue_source
        )
    except StartupError:
        await queue_source.aclose()
        await config_source.aclose()
        if store is not None:
            await store.aclose()
        raise
    metrics_server = MetricsServer(registry, config_source)
    try:
        if settings.metrics_port:
            metrics_port = await metrics_server.start(settings.metrics_host, settings.metrics_port)
            log.info("metrics on %s:%d", settings.metrics_host, metrics_port)
        await config_source.start()
        await server.start()
        log.info(
            "gateway filter listening on %s:%d, config from %s, response cache %s",
            settings.ext_proc_host,
            port,
            settings.control_plane_url,
            "on" if store is not None else "off (TTSGW_REDIS_URL unset)",
        )
        await stop.wait()
    finally:
        await server.stop(grace=2.0)
        await config_source.aclose()
        await queue_source.aclose()
        await metrics_server.aclose()
        if store is not None:
            await store.aclose()
        if telemetry is not None:
            telemetry.shutdown()


def _telemetry(settings: GatewaySettings, registry: CollectorRegistry) -> Telemetry | None:
    if not settings.zipkin_url:
        return None
    tracing = TracingSettings()
    telemetry = setup_tracing(
        "ttsgw-gateway-filter",
        settings.zipkin_url,
        sample_ratio=tracing.sample_ratio,
        slow_threshold_s=tracing.slow_threshold_s,
    )
    registry.register(telemetry.counts)
    return telemetry


def _cache_store(settings: GatewaySettings, registry: CollectorRegistry) -> CacheStore | None:
    if not settings.redis_url:
        return None
    # Connecting is lazy: a Redis that is down at start only means bypass until it is up.
    return RedisCacheStore(
        settings.redis_url,
        op_timeout_s=settings.cache_op_timeout_s,
        connect_timeout_s=settings.cache_connect_timeout_s,
        registry=registry,
    )


async def _main(settings: GatewaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from(args)
        asyncio.run(_main(settings))
    except StartupError as exc:
        print(f"ttsgw ext-proc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
