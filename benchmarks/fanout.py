"""1,000 concurrent ADS streams on one control plane: weight-change fan-out time and memory.

It starts the real control plane as a subprocess (so its RSS can be read from /proc),
loads a config, then opens N ADS streams from this process with grpc.aio, a few streams
per channel. Each stream is a light Envoy: it subscribes to CDS and LDS, then to EDS (the
cluster names it got) and RDS (`ttsgw_routes`), and ACKs every response the way Envoy
does (version_info, response_nonce, resource_names). It then makes weight changes with
`PUT /api/v1/models/{m}/splits?wait=acked` and measures, per stream, the time from the
admin write until that stream received the new RDS version and queued its ACK.

The per-stream times are taken in this one client process, so they include its own
event-loop queueing: they are an upper bound on what the control plane delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import grpc
from _harness import Stack, rss_mb, run_main, splits_body, stack, summary, synthetic_state
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.service.discovery.v3.ads_pb2_grpc import AggregatedDiscoveryServiceStub
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse

from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

ROUTE_CONFIG = "ttsgw_routes"
TARGET_P99_MS, TARGET_RSS_MB = 1000.0, 400.0


class LightEnvoy:
    """One ADS stream that subscribes and ACKs like Envoy, and timestamps every RDS version."""

    def __init__(self, node_id: str, channel: grpc.aio.Channel) -> None:
        self.node_id = node_id
        self._stub = AggregatedDiscoveryServiceStub(channel)
        self._outbox: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        self._names: dict[str, list[str]] = {}
        self.rds_seen: dict[str, float] = {}  # RDS version -> perf_counter when first received
        self.responses = 0
        self.error: str | None = None

    async def _requests(self) -> Any:
        while (request := await self._outbox.get()) is not None:
            yield request

    def _send(self, type_url: str, version: str = "", nonce: str = "", first: bool = False) -> None:
        request = DiscoveryRequest(
            type_url=type_url,
            version_info=version,
            response_nonce=nonce,
            resource_names=self._names.get(type_url, []),
        )
        if first:
            request.node.id = self.node_id
            request.node.cluster = "bench-fanout"
        self._outbox.put_nowait(request)

    def _on_response(self, response: DiscoveryResponse) -> None:
        type_url, version, nonce = response.type_url, response.version_info, response.nonce
        self.responses += 1
        if type_url == ROUTE:
            self.rds_seen.setdefault(version, time.perf_counter())
        self._send(type_url, version, nonce)  # the ACK
        if type_url == CLUSTER:
            eds = sorted(
                cluster.eds_cluster_config.service_name or cluster.name
                for cluster in (Cluster.FromString(any_.value) for any_ in response.resources)
                if cluster.type == Cluster.EDS
            )
            if eds != self._names.get(ENDPOINT):
                fresh = ENDPOINT not in self._names
                self._names[ENDPOINT] = eds
                if fresh:
                    self._send(ENDPOINT)
        elif type_url == LISTENER and ROUTE not in self._names:
            self._names[ROUTE] = [ROUTE_CONFIG]
            self._send(ROUTE)

    async def run(self) -> None:
        self._send(CLUSTER, first=True)
        self._send(LISTENER)
        call = self._stub.StreamAggregatedResources(self._requests())
        try:
            async for response in call:
                self._on_response(response)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{exc.code().name}: {exc.details()}"

    def close(self) -> None:
        self._outbox.put_nowait(None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent ADS streams")
    parser.add_argument("--channels", type=int, default=10, help="gRPC channels (connections)")
    parser.add_argument("--models", type=int, default=100, help="models (= backends) in config")
    parser.add_argument("--changes", type=int, default=10, help="weight changes to measure")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 streams, 3 changes")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.channels, args.changes = 50, 2, 3
    return args


async def wait_streams_converged(running: Stack, clients: list[LightEnvoy]) -> dict[str, Any]:
    while True:
        errors = [c.error for c in clients if c.error]
        if errors:
            raise RuntimeError(f"{len(errors)} stream(s) failed, first: {errors[0]}")
        with contextlib.suppress(RuntimeError):
            return await running.wait_converged(len(clients), timeout=5)


async def measure(running: Stack, clients: list[LightEnvoy], args: argparse.Namespace) -> float:
    """Make the weight changes, print the table; return the per-stream p99 in ms."""
    per_stream: list[float] = []
    converged: list[float | None] = []
    wall: list[float] = []
    missing = 0
    model = args.models // 2
    async with running.client(timeout=90) as client:
        for change in range(args.changes):
            started = time.perf_counter()
            response = await client.put(
                f"/api/v1/models/m{model}/splits",
                params={"wait": "acked", "timeout_s": 60},
                json=splits_body(args.models, model, change + 1),
            )
            wall.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            body = response.json()
            converged.append(body.get("converged_ms"))
            fleet = await running.fleet()
            rds = fleet["versions"]["rds"]
            times = [c.rds_seen.get(rds) for c in clients]
            missing += sum(t is None for t in times)
            this = [(t - started) * 1000 for t in times if t is not None]
            per_stream.extend(this)
            acked = sum(n["types"].get("rds", {}).get("acked") == rds for n in fleet["nodes"])
            print(
                f"  change {change + 1}: acked={body.get('acked')} converged_ms="
                f"{body.get('converged_ms')} wall {wall[-1]:.0f} ms, slowest stream "
                f"{max(this, default=float('nan')):.0f} ms, fleet rds ACKed {acked}/{len(clients)}",
                flush=True,
            )
            await asyncio.sleep(0.2)
    rows = [
        ("per stream: write -> new RDS received", summary(per_stream)),
        ("control plane converged_ms (push -> last ACK)", summary(converged)),
        ("client wall time of the admin write", summary(wall)),
    ]
    print(f"\n{'':48} {'p50':>8} {'p99':>8} {'max':>8}   (ms, {args.changes} changes)")
    for label, (p50, p99, top) in rows:
        print(f"{label:48} {p50:8.1f} {p99:8.1f} {top:8.1f}")
    if missing:
        print(f"{missing} stream-change(s) never saw the new RDS version")
    return rows[0][1][1]


async def main(args: argparse.Namespace) -> int:
    async with stack("fanout") as running:
        await running.start_control_plane()
        pid = running.control_plane_pid
        async with running.client(timeout=120) as client:
            response = await client.put(
                "/api/v1/state", params={"wait": "acked"}, json=synthetic_state(args.models)
            )
            response.raise_for_status()
        rss_before = rss_mb(pid)
        print(f"control plane pid {pid}, {args.models} models: RSS {rss_before:.0f} MB", flush=True)
        target = f"127.0.0.1:{running.settings.xds_port}"
        channels = [grpc.aio.insecure_channel(target) for _ in range(args.channels)]
        clients = [
            LightEnvoy(f"light-{i:04d}", channels[i % len(channels)]) for i in range(args.streams)
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        try:
            started = time.perf_counter()
            await asyncio.wait_for(wait_streams_converged(running, clients), 300)
            rss_connected = rss_mb(pid)
            print(
                f"{args.streams} streams on {args.channels} channels connected and ACKed in "
                f"{time.perf_counter() - started:.1f}s: control plane RSS {rss_connected:.0f} MB "
                f"(client RSS {rss_mb(os.getpid()):.0f} MB)",
                flush=True,
            )
            p99 = await measure(running, clients, args)
            rss_after = rss_mb(pid)
        finally:
            for c in clients:
                c.close()
            await asyncio.wait(tasks, timeout=10)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
    peak = max(rss_connected, rss_after)
    print(
        f"\ncontrol plane RSS: {rss_before:.0f} MB before streams, {rss_connected:.0f} MB with "
        f"{args.streams} streams, {rss_after:.0f} MB after {args.changes} changes"
    )
    verdict = "PASS" if p99 <= TARGET_P99_MS and peak <= TARGET_RSS_MB else "MISS"
    print(
        f"target: per-stream p99 {p99:.1f} ms (<= {TARGET_P99_MS:.0f}) and control plane RSS "
        f"{peak:.0f} MB (<= {TARGET_RSS_MB:.0f}) with {args.streams} streams: {verdict}"
    )
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_main(main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run())
