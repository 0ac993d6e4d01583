"""`ttsgw control-plane`: the xDS server and the admin API in one process, over one event loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.errors import ControlPlaneError
from control_plane.metrics.prometheus import PrometheusMetricsSource
from control_plane.metrics.receiver import EnvoyMetricsSource, MetricsReceiver
from control_plane.metrics.source import MetricsSource
from control_plane.metrics.window import FleetWindow
from control_plane.queue_status import HttpQueueFetcher, QueuePoller
from control_plane.rollouts import install_rollouts
from control_plane.service import ControlPlane
from control_plane.settings import ControlPlaneSettings
from control_plane.state_metrics import control_plane_collector
from control_plane.store import SQLiteRevisionStore
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.server import create_xds_server

log = logging.getLogger("control_plane")


def parse_settings(argv: list[str] | None) -> ControlPlaneSettings:
    parser = argparse.ArgumentParser(prog="ttsgw control-plane", description=__doc__)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--xds-host")
    parser.add_argument("--xds-port", type=int)
    parser.add_argument("--admin-host")
    parser.add_argument("--admin-port", type=int)
    parser.add_argument("--listener-port", type=int, help="the port Envoy listens on for clients")
    parser.add_argument("--ext-proc-host")
    parser.add_argument("--ext-proc-port", type=int)
    parser.add_argument("--access-log-path")
    parser.add_argument(
        "--zipkin-collector", help="HOST:PORT of the span relay Envoy traces to (default: off)"
    )
    parser.add_argument("--espeak-host", help="seeded espeak backend host")
    parser.add_argument("--espeak-port", type=int, help="seeded espeak backend port")
    parser.add_argument("--cosyvoice3-host", help="seeded cosyvoice3 backend host")
    parser.add_argument("--cosyvoice3-port", type=int, help="seeded cosyvoice3 backend port")
    parser.add_argument("--no-seed", dest="seed_defaults", action="store_const", const=False)
    parser.add_argument("--metrics-source", choices=["envoy", "prometheus"])
    parser.add_argument("--prometheus-url", help="Prometheus that scrapes the Envoys")
    parser.add_argument(
        "--stats-flush-interval", dest="stats_flush_interval_s", type=float, metavar="SECONDS"
    )
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return ControlPlaneSettings(**args)


async def serve(settings: ControlPlaneSettings, stop: asyncio.Event) -> None:
    registry = CollectorRegistry()
    store = SQLiteRevisionStore(settings.db_path)
    fleet = Fleet()
    cache = SnapshotCache()
    control_plane = ControlPlane(store, cache, fleet, settings.translator_options())
    head = await control_plane.start(settings.seed_state())
    # The receiver always listens, so the Envoys' sink never fails even with Prometheus chosen.
    window = FleetWindow(stale_after_s=3 * settings.stats_flush_interval_s)
    receiver = MetricsReceiver(window, registry)
    metrics_source: MetricsSource
    if settings.metrics_source == "prometheus" and settings.prometheus_url:
        metrics_source = PrometheusMetricsSource(settings.prometheus_url)
    else:
        metrics_source = EnvoyMetricsSource(window)
    xds, xds_port = create_xds_server(
        cache,
        fleet,
        host=settings.xds_host,
        port=settings.xds_port,
        registry=registry,
        extra_handlers=(receiver.handler(),),
    )
    cache_store = None
    if settings.redis_url:
        # Imported only when configured; admin scans may take longer than a request's budget.
        from ttsgw_common.cache.redis_store import RedisCacheStore

        cache_store = RedisCacheStore(settings.redis_url, op_timeout_s=5.0, connect_timeout_s=1.0)
    queue_poller = QueuePoller(
        lambda: control_plane.head.state,
        HttpQueueFetcher(timeout_s=settings.queue_poll_timeout_s),
        interval_s=settings.queue_poll_interval_s,
    )
    app = create_app(
        control_plane,
        admin_token=settings.resolve_admin_token(),
        dataplane_token=settings.resolve_dataplane_token(),
        registry=registry,
        cache_store=cache_store,
        metrics_source=metrics_source,
        queue_poller=queue_poller,
    )
    # Rollouts resume where they were: their state is in the same SQLite file.
    rollouts = install_rollouts(app, control_plane, metrics_source, settings.db_path)
    registry.register(control_plane_collector(control_plane, rollouts))
    await rollouts.start()
    await queue_poller.start()
    config = uvicorn.Config(
        app,
        host=settings.admin_host,
        port=settings.admin_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    web = uvicorn.Server(config)
    await xds.start()
    web_task = asyncio.create_task(web.serve())
    log.info(
        "control plane at revision %d: xDS on %s:%d, admin on http://%s:%d",
        head.number,
        settings.xds_host,
        xds_port,
        settings.admin_host,
        settings.admin_port,
    )
    stop_task = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({web_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if web_task in done and not web.started:
        raise OSError(f"admin port {settings.admin_port} could not be bound")
    web.should_exit = True
    await web_task
    stop_task.cancel()
    await rollouts.aclose()
    await queue_poller.aclose()
    await xds.stop(grace=1.0)
    if cache_store is not None:
        await cache_store.aclose()
    await metrics_source.aclose()
    store.close()


def run(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = parse_settings(argv)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except ValueError as exc:  # the tokens (control_plane/tokens.py): nothing else to free
        print(f"ttsgw control-plane: {exc}", file=sys.stderr)
        return 2
    except (OSError, ControlPlaneError) as exc:
        print(
            f"ttsgw control-plane: {exc}; free the port or pick another with "
            "--xds-port/--admin-port",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run())
