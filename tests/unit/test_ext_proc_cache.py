"""The filter's response cache through the real stream loop, on the in-memory store fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from prometheus_client import CollectorRegistry

from gateway.cache.memory import MemoryCacheStore
from gateway.config_client import StaticConfigSource
from gateway.ext_proc.metrics import CacheMetrics, FilterMetrics
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.router import Router
from gateway.ext_proc.stream import ExtProcService
from ttsgw_contract.gateway_config import CachePolicy, GatewayConfig, ModelRoute
from ttsgw_contract.modes import CACHE_MODE, FILL_MODE

AUDIO = b"RIFF" + b"\x01" * 5000


def config(**overrides: object) -> GatewayConfig:
    models = {
        "espeak": ModelRoute(backends=("espeak",), cache_ttl_s=60, cache_generation="g1"),
        "mix": ModelRoute(backends=("espeak", "cosyvoice3"), cache_ttl_s=60),
        "nottl": ModelRoute(backends=("espeak",), cache_ttl_s=0),
    }
    return GatewayConfig(version="v1", models=models, **overrides)  # type: ignore[arg-type]


def headers_msg(pairs: dict[str, str], *, response: bool = False, eos: bool = False):
    hm = HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])
    phase = "response_headers" if response else "request_headers"
    return ProcessingRequest(**{phase: HttpHeaders(headers=hm, end_of_stream=eos)})


def body_msg(data: bytes, *, response: bool = False, eos: bool = True) -> ProcessingRequest:
    phase = "response_body" if response else "request_body"
    return ProcessingRequest(**{phase: HttpBody(body=data, end_of_stream=eos)})


SPEECH = {":method": "POST", ":path": "/v1/audio/speech", "x-request-id": "rid-1"}


def speech_body(model: str = "espeak", **extra: object) -> ProcessingRequest:
    return body_msg(json.dumps({"model": model, "input": "hello", **extra}).encode())


class Stream:
    """One ext_proc stream driven message by message, like Envoy does."""

    def __init__(self, service: ExtProcService) -> None:
        self._queue: asyncio.Queue[ProcessingRequest | None] = asyncio.Queue()
        self._responses = service.Process(self._requests(), None)  # type: ignore[arg-type]

    async def _requests(self) -> AsyncIterator[ProcessingRequest]:
        while (message := await self._queue.get()) is not None:
            yield message

    async def send(self, message: ProcessingRequest) -> ProcessingResponse:
        await self._queue.put(message)
        return await anext(self._responses)

    async def close(self) -> None:
        await self._queue.put(None)
        with pytest.raises(StopAsyncIteration):
            await anext(self._responses)

    async def request(self, body: ProcessingRequest) -> ProcessingResponse:
        await self.send(headers_msg(SPEECH))
        return await self.send(body)

    async def respond(self, chunks: list[bytes], status: str = "200") -> ProcessingResponse:
        response = await self.send(
            headers_msg(
                {":status": status, "content-type": "audio/wav", "x-tts-backend": "espeak"},
                response=True,
            )
        )
        for i, chunk in enumerate(chunks):
            await self.send(body_msg(chunk, response=True, eos=i == len(chunks) - 1))
        return response


class Harness:
    def __init__(self, cfg: GatewayConfig | None = None, *, wait_s: float = 2.0) -> None:
        self.store = MemoryCacheStore()
        self.registry = CollectorRegistry()
        source = StaticConfigSource(cfg or config())
        self.cache = ResponseCache(self.store, CacheMetrics(self.registry), follower_wait_s=wait_s)
        self.service = ExtProcService(
            source, Router(cache=self.cache).select, FilterMetrics(self.registry, source)
        )

    def stream(self) -> Stream:
        return Stream(self.service)

    def count(self, model: str, outcome: str) -> float:
        labels = {"model": model, "outcome": outcome}
        return self.registry.get_sample_value("ttsgw_cache_requests_total", labels) or 0.0

    async def settle(self) -> None:
        await asyncio.sleep(0)
        await asyncio.gather(*self.cache._background)


def response_header(response: ProcessingResponse, phase: str, name: str) -> str | None:
    common = getattr(response, phase).response
    for h in common.header_mutation.set_headers:
        if h.header.key == name:
            return h.header.raw_value.decode()
    return None


def immediate_headers(response: ProcessingResponse) -> dict[str, str]:
    return {
        h.header.key: h.header.raw_value.decode()
        for h in response.immediate_response.headers.set_headers
    }


async def test_miss_fills_then_hit_is_answered_by_the_filter():
    h = Harness()
    first = h.stream()
    head = await first.send(headers_msg(SPEECH))
    assert head.mode_override == CACHE_MODE  # the response headers will come to us
    body = await first.send(speech_body())
    assert response_header(body, "request_body", "x-tts-model") == "espeak"
    resp = await first.respond([AUDIO[:1000], AUDIO[1000:]])
    assert response_header(resp, "response_headers", "x-tts-cache") == "miss"
    assert resp.mode_override == FILL_MODE
    await first.close()
    await h.settle()
    assert h.store.entry_count() == 1

    hit = await h.stream().request(speech_body(speed=1))  # 1 and 1.0 are one key
    assert hit.immediate_response.status.code == 200
    assert hit.immediate_response.body == AUDIO
    assert immediate_headers(hit) == {
        "content-type": "audio/wav",
        "x-tts-cache": "hit",
        "x-tts-backend": "espeak",
        "x-request-id": "rid-1",
    }
    await h.settle()
    assert (h.count("espeak", "miss"), h.count("espeak", "hit")) == (1, 1)
    assert h.registry.get_sample_value("ttsgw_cache_bytes_served_total") == len(AUDIO)
    assert (await h.store.stats())["espeak"]["hits"] == 1


@pytest.mark.parametrize(
    ("cfg", "model", "extra"),
    [
        (config(), "mix", {}),  # split: never crosses variants
        (config(), "nottl", {}),
        (config(cache=CachePolicy(enabled=False)), "espeak", {}),
    ],
)
async def test_bypass_cases_go_to_the_backend_unobserved(cfg, model, extra):
    h = Harness(cfg)
    for _ in range(2):
        s = h.stream()
        body = await s.request(speech_body(model, **extra))
        assert body.WhichOneof("response") == "request_body"
        resp = await s.respond([AUDIO])
        assert response_header(resp, "response_headers", "x-tts-cache") == "bypass"
        assert not resp.HasField("mode_override")  # the body never comes to the filter
        await s.close()
    await h.settle()
    assert h.store.entry_count() == 0
    assert h.count(model, "bypass") == 2


async def test_identical_misses_wait_for_the_leader_and_share_its_bytes():
    h = Harness()
    leader = h.stream()
    await leader.request(speech_body())
    followers = [h.stream() for _ in range(5)]
    waiting = [asyncio.create_task(f.request(speech_body())) for f in followers]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in waiting)
    await leader.respond([AUDIO])
    answers = await asyncio.gather(*waiting)
    assert all(a.immediate_response.body == AUDIO for a in answers)
    assert h.registry.get_sample_value("ttsgw_single_flight_waits_total") == 5
    assert (h.count("espeak", "miss"), h.count("espeak", "hit")) == (1, 5)


async def test_a_leader_that_vanishes_sends_followers_to_the_backend_at_once():
    h = Harness(wait_s=30)
    leader = h.stream()
    await leader.request(speech_body())
    follower = asyncio.create_task(h.stream().request(speech_body()))
    await asyncio.sleep(0.02)
    await leader.close()  # client gone: no response ever reaches the filter
    answer = await asyncio.wait_for(follower, 1.0)
    assert response_header(answer, "request_body", "x-tts-model") == "espeak"
    assert h.count("espeak", "miss") == 2


@pytest.mark.parametrize("status", ["500", "503", "429"])
async def test_only_a_200_fills(status):
    h = Harness()
    leader = h.stream()
    await leader.request(speech_body())
    follower = asyncio.create_task(h.stream().request(speech_body()))
    await asyncio.sleep(0.02)
    resp = await leader.respond([b'{"error": {}}'], status=status)
    assert not resp.HasField("mode_override")
    assert (await follower).WhichOneof("response") == "request_body"
    await h.settle()
    assert h.store.entry_count() == 0


async def test_an_entry_over_the_size_limit_is_not_stored():
    h = Harness(config(cache=CachePolicy(max_entry_bytes=3000)))
    s = h.stream()
    await s.request(speech_body())
    await s.respond([AUDIO[:2000], AUDIO[2000:]])
    await s.close()
    await h.settle()
    assert h.store.entry_count() == 0


async def test_a_dead_store_is_a_counted_bypass():
    h = Harness()
    h.store.down = True
    s = h.stream()
    body = await s.request(speech_body())
    assert response_header(body, "request_body", "x-tts-model") == "espeak"
    resp = await s.respond([AUDIO])
    assert response_header(resp, "response_headers", "x-tts-cache") == "bypass"
    assert h.count("espeak", "bypass") == 1


async def test_a_changed_generation_misses():
    h = Harness()
    s = h.stream()
    await s.request(speech_body())
    await s.respond([AUDIO])
    await s.close()
    await h.settle()
    route = ModelRoute(backends=("espeak",), cache_ttl_s=60, cache_generation="g2")
    source = StaticConfigSource(GatewayConfig(version="v2", models={"espeak": route}))
    h.service = ExtProcService(
        source, Router(cache=h.cache).select, FilterMetrics(CollectorRegistry(), source)
    )
    body = await h.stream().request(speech_body())
    assert body.WhichOneof("response") == "request_body"


async def test_without_a_cache_speech_responses_never_reach_the_filter():
    source = StaticConfigSource(config())
    service = ExtProcService(source, Router().select, FilterMetrics(CollectorRegistry(), source))
    head = await Stream(service).send(headers_msg(SPEECH))
    assert not head.HasField("mode_override")


async def test_a_request_right_after_the_fill_finds_the_entry_not_a_new_flight():
    """The store write lands before the flight ends, so nobody slips in between."""
    h = Harness()
    gate = asyncio.Event()
    put = h.store.put

    async def slow_put(*args: object, **kwargs: object) -> None:
        await gate.wait()
        await put(*args, **kwargs)  # type: ignore[arg-type]

    h.store.put = slow_put  # type: ignore[method-assign]
    leader = h.stream()
    await leader.request(speech_body())
    await leader.respond([AUDIO])  # the body is complete; its store write is held
    late = asyncio.create_task(h.stream().request(speech_body()))
    await asyncio.sleep(0.05)
    assert not late.done()  # it follows the still-open flight instead of missing
    gate.set()
    answer = await late
    assert answer.immediate_response.body == AUDIO
    await h.settle()
    assert h.count("espeak", "miss") == 1
