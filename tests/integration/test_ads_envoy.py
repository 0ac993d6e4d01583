"""The ADS server against the real Envoy binary: full ACK of all four types, and a NACK that is
recorded once and not resent in a loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from control_plane.xds import testing
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.resources import CLUSTER, PUSH_ORDER, SHORT_NAMES, Resources
from control_plane.xds.server import create_xds_server
from control_plane.xds.snapshot import Snapshot
from ttsgw.components import free_port

pytestmark = pytest.mark.e2e

ENVOY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy"
NODE_ID = "e2e-envoy"


def bootstrap(xds_port: int) -> dict[str, Any]:
    """Only the xDS server and the admin address are static; everything else comes over ADS."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}
    return {
        "node": {"id": NODE_ID, "cluster": "ttsgw-e2e"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds_cluster",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds_cluster",
                        "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                    },
                }
            ]
        },
    }


def fleet_resources(listener_port: int) -> Resources:
    """One static cluster, one EDS cluster with its endpoints, a listener and its routes."""
    return Resources(
        clusters=(testing.static_cluster("static-backend"), testing.eds_cluster("eds-backend")),
        endpoints=(testing.assignment("eds-backend", port=free_port()),),
        listeners=(testing.listener("ingress", "routes", listener_port),),
        routes=(testing.route_config("routes", {"static-backend": 70, "eds-backend": 30}),),
    )


@pytest.fixture
async def envoy_and_xds(
    tmp_path: Path,
) -> AsyncIterator[tuple[SnapshotCache, Fleet, CollectorRegistry, Path]]:
    if not ENVOY.exists():
        pytest.skip(f"no Envoy binary at {ENVOY}")
    cache, fleet, registry = SnapshotCache(), Fleet(), CollectorRegistry()
    server, port = create_xds_server(cache, fleet, host="127.0.0.1", port=0, registry=registry)
    await server.start()
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(bootstrap(port)))
    log_path = tmp_path / "envoy.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(ENVOY),
            "--disable-hot-restart",
            "--base-id",
            str(random.randint(1000, 60000)),
            "--concurrency",
            "1",
            "-c",
            str(config),
            "--log-level",
            "info",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ},
        )
    try:
        yield cache, fleet, registry, log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        await server.stop(grace=None)


def node_types(fleet: Fleet) -> dict[str, Any]:
    nodes = [n for n in fleet.to_public() if n["node_id"] == NODE_ID]
    return nodes[0]["types"] if nodes else {}


async def until(predicate: Any, timeout: float, what: str, log_path: Path) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            tail = log_path.read_text(errors="replace")[-4000:]
            pytest.fail(f"timed out waiting for {what}; Envoy log tail:\n{tail}")
        await asyncio.sleep(0.05)


def all_acked(fleet: Fleet, snapshot: Snapshot) -> bool:
    types = node_types(fleet)
    return all(
        types.get(SHORT_NAMES[t], {}).get("acked") == snapshot.versions[t] for t in PUSH_ORDER
    )


async def test_envoy_acks_every_type_and_a_nack_is_not_resent(envoy_and_xds) -> None:  # type: ignore[no-untyped-def]
    cache, fleet, registry, log_path = envoy_and_xds
    resources = fleet_resources(free_port())
    good = Snapshot.build(resources)
    cache.set_snapshot(good)
    await until(lambda: all_acked(fleet, good), 30, "Envoy to ACK CDS, EDS, LDS and RDS", log_path)
    [node] = fleet.to_public()
    assert node["envoy_version"].startswith("1.40")
    assert node["cluster"] == "ttsgw-e2e"
    assert await fleet.wait_for_ack(good.versions, timeout=1) is not None

    # A cluster Envoy itself must reject: connect_timeout has to be > 0.
    bad_cluster = testing.static_cluster("bad-backend")
    bad_cluster.connect_timeout.seconds = -1
    bad = Snapshot.build(
        dataclasses.replace(resources, clusters=(*resources.clusters, bad_cluster))
    )
    assert bad.versions[CLUSTER] != good.versions[CLUSTER]
    cds_pushes = registry.get_sample_value("ttsgw_xds_pushes_total", {"type": "cds"})
    cache.set_snapshot(bad)
    await until(
        lambda: (node_types(fleet)["cds"]["nack"] or {}).get("version") == bad.versions[CLUSTER],
        15,
        "Envoy to NACK the bad cluster",
        log_path,
    )
    await asyncio.sleep(2)  # a resend loop would show up here
    assert registry.get_sample_value("ttsgw_xds_pushes_total", {"type": "cds"}) == cds_pushes + 1
    assert registry.get_sample_value("ttsgw_xds_nacks_total", {"type": "cds"}) == 1
    cds = node_types(fleet)["cds"]
    assert cds["acked"] == good.versions[CLUSTER]  # Envoy keeps its last good clusters
    assert cds["sent"] == bad.versions[CLUSTER]
    assert "positive duration" in cds["nack"]["message"]
    assert await fleet.wait_for_ack(bad.versions, timeout=0.2) is None

    # The fix is a new version that also drops "static-backend", which the routes Envoy runs
    # still use: CDS first goes back to the good clusters (bad one gone, static kept), and only
    # after Envoy ACKs routes without it does CDS drop it.
    fixed = Snapshot.build(
        Resources(
            clusters=(resources.clusters[1],),
            endpoints=resources.endpoints,
            listeners=resources.listeners,
            routes=(testing.route_config("routes", {"eds-backend": 1}),),
        )
    )
    cds_pushes = registry.get_sample_value("ttsgw_xds_pushes_total", {"type": "cds"})
    cache.set_snapshot(fixed)
    assert await fleet.wait_for_ack(fixed.versions, timeout=15) is not None
    assert registry.get_sample_value("ttsgw_xds_pushes_total", {"type": "cds"}) == cds_pushes + 2
    assert all_acked(fleet, fixed)
