"""The ADS gRPC server: a thin adapter between grpc.aio streams and `AdsStream`.

Responses leave as pre-encoded bytes (the method's serializer is the identity), so protobuf
never re-serializes a snapshot per Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from prometheus_client import CollectorRegistry

from control_plane.xds.cache import SnapshotSource
from control_plane.xds.callbacks import Callbacks, Fanout
from control_plane.xds.errors import BindError, ProtocolError
from control_plane.xds.fleet import Fleet
from control_plane.xds.metrics import XdsMetrics
from control_plane.xds.stream import AdsStream

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = "StreamAggregatedResources"


def _identity(data: bytes) -> bytes:
    return data


class AdsServicer:
    """Runs one `AdsStream` per gRPC stream, fed by its requests and by snapshot changes."""

    def __init__(self, cache: SnapshotSource, callbacks: Callbacks) -> None:
        self._cache = cache
        self._callbacks = callbacks

    async def stream_aggregated_resources(
        self,
        requests: AsyncIterator[DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        stream = AdsStream(self._callbacks, self._cache.snapshot())
        next_request = asyncio.ensure_future(anext(requests))
        next_snapshot = asyncio.ensure_future(self._cache.wait_for_change(stream.snapshot_version))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {next_request, next_snapshot}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_request in done:
                    try:
                        request = next_request.result()
                    except StopAsyncIteration:
                        return
                    try:
                        pushes = stream.on_request(request)
                    except ProtocolError as exc:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
                    for push in pushes:
                        yield push.data
                    next_request = asyncio.ensure_future(anext(requests))
                if next_snapshot in done:
                    # Before the Envoy has said who it is, the snapshot only waits in the stream.
                    snapshot = next_snapshot.result()
                    for push in stream.on_snapshot(snapshot):
                        yield push.data
                        # Resumed once grpc.aio has written the message: the push latency.
                        self._callbacks.on_response_written(
                            push.type_url, self._cache.published_at(snapshot.version)
                        )
                    next_snapshot = asyncio.ensure_future(
                        self._cache.wait_for_change(stream.snapshot_version)
                    )
        finally:
            for task in (next_request, next_snapshot):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            stream.close()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                ADS_METHOD: grpc.stream_stream_rpc_method_handler(
                    self.stream_aggregated_resources,
                    request_deserializer=DiscoveryRequest.FromString,
                    response_serializer=_identity,
                )
            },
        )


def create_xds_server(
    cache: SnapshotSource,
    fleet: Fleet,
    *,
    host: str = "0.0.0.0",
    port: int = 18000,
    registry: CollectorRegistry | None = None,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
) -> tuple[grpc.aio.Server, int]:
    """Build (not start) the ADS server bound to host:port; returns it and the bound port.

    Call it inside the running event loop, then `await server.start()`. With `registry` None the
    metrics go to a private registry nobody serves. `extra_handlers` are other services Envoy
    reaches through the same xDS cluster (e.g. the metrics_service sink). Raises BindError when
    the port is taken. The fleet and the metrics both subscribe to every stream's callbacks.
    """
    metrics = XdsMetrics(registry if registry is not None else CollectorRegistry())
    servicer = AdsServicer(cache, Fanout((fleet, metrics)))
    # SO_REUSEPORT would let a second server silently share a taken port.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((servicer.handler(), *extra_handlers))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise BindError(f"cannot bind the xDS server to {address}: {exc}") from exc
    if bound == 0:
        raise BindError(f"cannot bind the xDS server to {address}: address in use or invalid")
    log.info("xDS server bound to %s (port %d)", address, bound)
    return server, bound
