"""Where the gateway filter spends a cache hit: the real ext_proc server, an in-memory store.

Starts the filter's gRPC server in-process (real grpc.aio, the real processors, the
MemoryCacheStore test fake instead of Redis so only the filter is measured), fills the
cache with a 100 KB entry, then drives N hit streams (request headers + body, answered
with an immediate 200) at a bounded concurrency and prints throughput, CPU per hit
(client and server share this one process) and a cProfile by internal time.

    .venv/bin/python benchmarks/filter_profile.py [--hits 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import time

import grpc
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import ExternalProcessorStub
from prometheus_client import CollectorRegistry

from gateway.cache.memory import MemoryCacheStore
from gateway.config_client import StaticConfigSource
from gateway.ext_proc.response_cache import _canonical
from gateway.ext_proc.server import create_server
from gateway.settings import GatewaySettings
from gateway.speech import parse_speech_request
from ttsgw_contract.cache import CachedResponse
from ttsgw_contract.cache_keys import request_key
from ttsgw_contract.gateway_config import GatewayConfig, ModelRoute

BODY = json.dumps({"model": "m", "input": "hello there", "voice": "alloy"}).encode()
HEADERS = HeaderMap(
    headers=[
        HeaderValue(key=":method", raw_value=b"POST"),
        HeaderValue(key=":path", raw_value=b"/v1/audio/speech"),
        HeaderValue(key="x-request-id", raw_value=b"bench"),
    ]
)


async def one_hit(stub: ExternalProcessorStub) -> ProcessingResponse:
    call = stub.Process()
    response = ProcessingResponse()
    for message in (
        ProcessingRequest(request_headers=HttpHeaders(headers=HEADERS)),
        ProcessingRequest(request_body=HttpBody(body=BODY, end_of_stream=True)),
    ):
        await call.write(message)
        response = await call.read()
        if response.HasField("immediate_response"):
            break
    await call.done_writing()
    return response


async def main(hits: int, concurrency: int) -> None:
    route = ModelRoute(backends=("b",), cache_ttl_s=3600, cache_generation="g")
    source = StaticConfigSource(GatewayConfig(version="v", models={"m": route}))
    store = MemoryCacheStore()
    settings = GatewaySettings(ext_proc_port=0, metrics_port=0)
    server, port = create_server(settings, source, CollectorRegistry(), store=store)
    await server.start()
    key = request_key("m", "g", _canonical(parse_speech_request(BODY)))
    await store.put(key, CachedResponse(b"x" * 100_000, "audio/wav", "b"), 3600)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ExternalProcessorStub(channel)
        assert (await one_hit(stub)).HasField("immediate_response"), "the warm-up must hit"
        gate = asyncio.Semaphore(concurrency)

        async def limited() -> None:
            async with gate:
                await one_hit(stub)

        profile = cProfile.Profile()
        wall, cpu = time.perf_counter(), time.process_time()
        profile.enable()
        await asyncio.gather(*(limited() for _ in range(hits)))
        profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await server.stop(None)
    print(
        f"{hits} hits at concurrency {concurrency}: {hits / wall:.0f} hits/s, "
        f"{cpu / hits * 1e6:.0f} us CPU per hit (client and server in one process, profiled)"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.hits, args.concurrency))
