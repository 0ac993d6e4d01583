"""A real grpc.aio ADS server on an ephemeral port, spoken to by a real grpc.aio ADS client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from google.rpc.status_pb2 import Status
from prometheus_client import CollectorRegistry

from control_plane.xds import testing
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.errors import BindError
from control_plane.xds.fleet import Fleet
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.xds.server import create_xds_server
from control_plane.xds.snapshot import Snapshot

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


class AdsClient:
    """A minimal ADS client: requests go through a queue, responses are read one at a time."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        self._requests: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        self._node = Node(id=node_id, cluster="gw", user_agent_version="test-client")
        self._first = True
        rpc = channel.stream_stream(
            METHOD,
            request_serializer=DiscoveryRequest.SerializeToString,
            response_deserializer=DiscoveryResponse.FromString,
        )
        self.call = rpc(self._iterate())
        self.last: dict[str, DiscoveryResponse] = {}
        # Cancelling a pending read would cancel the whole RPC, so one task reads into a queue.
        self._responses: asyncio.Queue[DiscoveryResponse] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self._responses.put_nowait(response)

    async def _iterate(self) -> AsyncIterator[DiscoveryRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, type_url: str, names: tuple[str, ...] = (), **fields: object) -> None:
        request = DiscoveryRequest(type_url=type_url, resource_names=names, **fields)  # type: ignore[arg-type]
        if self._first:
            request.node.CopyFrom(self._node)
            self._first = False
        self._requests.put_nowait(request)

    def ack(self, type_url: str, names: tuple[str, ...] = ()) -> None:
        last = self.last[type_url]
        self.send(type_url, names, version_info=last.version_info, response_nonce=last.nonce)

    def nack(self, type_url: str, acked: str, message: str, names: tuple[str, ...] = ()) -> None:
        last = self.last[type_url]
        self.send(
            type_url,
            names,
            version_info=acked,
            response_nonce=last.nonce,
            error_detail=Status(code=3, message=message),
        )

    async def receive(self, timeout: float = 5.0) -> DiscoveryResponse:
        response = await asyncio.wait_for(self._responses.get(), timeout)
        self.last[response.type_url] = response
        return response

    async def nothing_for(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self._responses.get(), seconds)

    async def close(self) -> None:
        self._requests.put_nowait(None)
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._reader


@pytest.fixture
async def xds() -> AsyncIterator[tuple[SnapshotCache, Fleet, int, CollectorRegistry]]:
    cache, fleet, registry = SnapshotCache(), Fleet(), CollectorRegistry()
    server, port = create_xds_server(cache, fleet, host="127.0.0.1", port=0, registry=registry)
    await server.start()
    try:
        yield cache, fleet, port, registry
    finally:
        await server.stop(grace=None)


async def test_subscribe_ack_rds_only_change_nack_not_resent(xds) -> None:  # type: ignore[no-untyped-def]
    cache, fleet, port, registry = xds
    first = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    cache.set_snapshot(first)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = AdsClient(channel, "envoy-a")
        # Subscribe the way Envoy does: CDS, then EDS for the EDS clusters, LDS, then RDS.
        client.send(CLUSTER)
        cds = await client.receive()
        assert (cds.type_url, cds.version_info, len(cds.resources)) == (
            CLUSTER,
            first.versions[CLUSTER],
            2,
        )
        client.ack(CLUSTER)
        client.send(ENDPOINT, ("canary", "stable"))
        assert (await client.receive()).type_url == ENDPOINT
        client.ack(ENDPOINT, ("canary", "stable"))
        client.send(LISTENER)
        assert (await client.receive()).type_url == LISTENER
        client.ack(LISTENER)
        client.send(ROUTE, ("routes",))
        rds = await client.receive()
        assert rds.type_url == ROUTE and rds.version_info == first.versions[ROUTE]
        client.ack(ROUTE, ("routes",))
        waited = await fleet.wait_for_ack(first.versions, timeout=5)
        assert waited is not None

        # A weight change: only RDS comes.
        second = Snapshot.build(testing.canary({"stable": 50, "canary": 50}))
        wait = asyncio.create_task(fleet.wait_for_ack(second.versions, timeout=5))
        cache.set_snapshot(second)
        rds2 = await client.receive()
        assert rds2.type_url == ROUTE and rds2.version_info == second.versions[ROUTE]
        assert rds2.nonce != rds.nonce
        await client.nothing_for(0.3)
        client.ack(ROUTE, ("routes",))
        converged = await wait
        assert converged is not None and converged < 5

        # Another change, rejected: recorded, and not sent again.
        third = Snapshot.build(testing.canary({"stable": 10, "canary": 90}))
        cache.set_snapshot(third)
        rds3 = await client.receive()
        assert rds3.version_info == third.versions[ROUTE]
        client.nack(ROUTE, second.versions[ROUTE], "weights rejected by test", ("routes",))
        await client.nothing_for(0.5)
        assert await fleet.wait_for_ack(third.versions, timeout=0.2) is None

        [node] = fleet.to_public()
        assert node["node_id"] == "envoy-a"
        assert node["envoy_version"] == "test-client"
        rds_status = node["types"]["rds"]
        assert rds_status["acked"] == second.versions[ROUTE]
        assert rds_status["nack"]["version"] == third.versions[ROUTE]
        assert rds_status["nack"]["message"] == "weights rejected by test"
        assert node["types"]["cds"]["acked"] == first.versions[CLUSTER]
        assert registry.get_sample_value("ttsgw_xds_nacks_total", {"type": "rds"}) == 1
        assert registry.get_sample_value("ttsgw_xds_pushes_total", {"type": "rds"}) == 3
        assert registry.get_sample_value("ttsgw_xds_connected_streams") == 1
        count = registry.get_sample_value("ttsgw_xds_convergence_seconds_count", {"type": "rds"})
        assert count == 2
        await client.close()

    # The node disappears once its stream closes.
    for _ in range(100):
        if not fleet.to_public():
            break
        await asyncio.sleep(0.02)
    assert fleet.to_public() == []
    assert registry.get_sample_value("ttsgw_xds_connected_streams") == 0


async def test_two_streams_from_one_node_are_counted(xds) -> None:  # type: ignore[no-untyped-def]
    cache, fleet, port, _ = xds
    cache.set_snapshot(Snapshot.build(testing.canary({"stable": 100})))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        clients = [AdsClient(channel, "same-node") for _ in range(2)]
        for client in clients:
            client.send(CLUSTER)
            assert (await client.receive()).type_url == CLUSTER
            client.ack(CLUSTER)
        assert await fleet.wait_for_ack({CLUSTER: cache.snapshot().versions[CLUSTER]}, 5)  # type: ignore[union-attr]
        [node] = fleet.to_public()
        assert node["streams"] == 2
        for client in clients:
            await client.close()


async def test_first_request_without_node_is_rejected(xds) -> None:  # type: ignore[no-untyped-def]
    _, _, port, _ = xds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc = channel.stream_stream(
            METHOD,
            request_serializer=DiscoveryRequest.SerializeToString,
            response_deserializer=DiscoveryResponse.FromString,
        )

        async def one() -> AsyncIterator[DiscoveryRequest]:
            yield DiscoveryRequest(type_url=CLUSTER)
            await asyncio.sleep(5)

        call = rpc(one())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_taken_port_raises_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BindError, match=str(port)):
            create_xds_server(SnapshotCache(), Fleet(), host="127.0.0.1", port=port)
