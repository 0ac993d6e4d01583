"""Benchmark: the cost of one metrics_service flush from a real Envoy with 1,000 clusters.

A real Envoy (the venv's 1.40 binary) proxies one request to each of N static clusters
(every 10th answered 500) and streams its stats to a capture server, twice: with no stats
matcher, and with the bootstrap's own `stats_config` (control_plane/bootstrap.py). For the flush
each sends after the traffic it prints the size and the time to decode it with
envoy-data-plane (betterproto2, a full parse) and with the control plane's decoder
(control_plane/metrics/flush.py, only the fields the analysis reads), and checks that both
decoders count the same requests and 5xx.

Run: .venv/bin/python benchmarks/metrics_decode.py [--clusters N] [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx

from control_plane.bootstrap import BootstrapOptions, render_bootstrap
from control_plane.metrics.flush import parse_flush
from control_plane.metrics.testing import StreamMetricsMessage

ENVOY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "envoy"


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        code = 500 if self.path.endswith("/fail") else 200
        self.send_response(code)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _config(clusters: int, sink_port: int, backend: int, listener: int, matcher: bool) -> Any:
    boot = render_bootstrap(
        BootstrapOptions(xds_port=sink_port, admin_port=_free_port(), stats_flush_interval_s=1.0)
    )
    boot.pop("dynamic_resources")
    if not matcher:
        boot.pop("stats_config")
    for i in range(clusters):
        name = f"backend-{i}"
        boot["static_resources"]["clusters"].append(
            {
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(backend)}}]}],
                },
            }
        )
    routes = [
        {"match": {"prefix": f"/backend-{i}/"}, "route": {"cluster": f"backend-{i}"}}
        for i in range(clusters)
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ttsgw",
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
    }
    boot["static_resources"]["listeners"] = [
        {
            "name": "clients",
            "address": _address(listener),
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}],
        }
    ]
    return boot


async def _capture(clusters: int, matcher: bool) -> list[bytes]:
    flushes: list[tuple[float, bytes]] = []

    async def stream(requests: Any, context: grpc.aio.ServicerContext) -> bytes:
        async for data in requests:
            flushes.append((time.monotonic(), data))
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "envoy.service.metrics.v3.MetricsService",
                {
                    "StreamMetrics": grpc.stream_unary_rpc_method_handler(
                        stream, request_deserializer=bytes, response_serializer=bytes
                    )
                },
            ),
        )
    )
    sink_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    listener = _free_port()
    boot = _config(clusters, sink_port, httpd.server_address[1], listener, matcher)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "envoy.json"
        path.write_text(json.dumps(boot))
        envoy = subprocess.Popen(
            [
                str(ENVOY),
                "-c",
                str(path),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "error",
            ],
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener}") as client:
                for _ in range(300):
                    try:
                        await client.get("/backend-0/warm")
                        break
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)
                limit = asyncio.Semaphore(32)

                async def one(i: int) -> None:
                    async with limit:
                        await client.get(f"/backend-{i}/" + ("fail" if i % 10 == 0 else "ok"))

                started = time.monotonic()
                await asyncio.gather(*(one(i) for i in range(clusters)))
            await asyncio.sleep(2.5)
        finally:
            envoy.terminate()
            envoy.wait()
            httpd.shutdown()
            await server.stop(0)
    # Deltas and interval histograms: the flushes since the traffic began carry all of it.
    return [data for at, data in flushes if at > started]


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _reference_counts(flushes: list[bytes]) -> tuple[int, int]:
    requests = errors = 0
    for data in flushes:
        for family in StreamMetricsMessage.parse(data).envoy_metrics:
            cluster, _, stat = family.name.removeprefix("cluster.").partition(".")
            if cluster.startswith("backend-") and stat in {f"upstream_rq_{c}xx" for c in "12345"}:
                value = int(sum(m.counter.value for m in family.metric if m.counter))
                requests += value
                errors += value if stat == "upstream_rq_5xx" else 0
    return requests, errors


def _our_counts(flushes: list[bytes]) -> tuple[int, int]:
    requests = errors = 0
    for data in flushes:
        for name, delta in parse_flush(data).clusters.items():
            if name.startswith("backend-"):
                requests += delta.requests
                errors += delta.errors_5xx
    return requests, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    rows = []
    for label, matcher in (("no stats matcher", False), ("ttsgw stats_config", True)):
        flushes = asyncio.run(_capture(args.clusters, matcher))
        got, expected = _our_counts(flushes), _reference_counts(flushes)
        assert got == expected, (label, got, expected)
        data = max(flushes, key=len)  # every used stat is sent each flush: sizes barely vary
        families = len(StreamMetricsMessage.parse(data).envoy_metrics)
        slow = _median_ms(functools.partial(StreamMetricsMessage.parse, data), args.repeat)
        fast = _median_ms(functools.partial(parse_flush, data), args.repeat)
        rows.append((label, len(data), families, slow, fast, got))
    print(f"\nmetrics_service flush from Envoy 1.40, {args.clusters} clusters, 1 request each")
    print(f"(every 10th a 500; Envoy counts its own 503s too); median of {args.repeat} decodes\n")
    header = ("config", "bytes", "families", "betterproto2 ms", "ttsgw decoder ms", "speed-up")
    print(f"{header[0]:<20} {header[1]:>10} {header[2]:>9} {header[3]:>16} {header[4]:>17} "
          f"{header[5]:>9}")  # fmt: skip
    for label, size, families, slow, fast, _ in rows:
        print(f"{label:<20} {size:>10,} {families:>9,} {slow:>16.1f} {fast:>17.2f} "
              f"{slow / fast:>8.0f}x")  # fmt: skip
    print(f"\nboth decoders counted (requests, 5xx) = {rows[-1][5]} over the flushes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
