"""RedisCacheStore fails open: a wedged or dead Redis costs one op timeout, then nothing.

Redis is real and is SIGSTOPped (connections hang, like a wedged host) or SIGKILLed
(connections are refused). A silent TCP listener stands in for a wedged Redis where the
test must count the connections the store makes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.redis_server import RedisServer
from ttsgw_common.cache.redis_store import RedisCacheStore
from ttsgw_contract.cache import CachedResponse, CacheUnavailable
from ttsgw_contract.cache_keys import request_key

WAV = CachedResponse(body=b"RIFF-audio", content_type="audio/wav", backend="espeak")
KEY = request_key("espeak", "g1", {"input": "hello"})
OP_TIMEOUT_S = 0.05
COOLDOWN_S = 0.3


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def store(
    redis_server: RedisServer, registry: CollectorRegistry
) -> AsyncIterator[RedisCacheStore]:
    store = RedisCacheStore(
        redis_server.url, op_timeout_s=OP_TIMEOUT_S, cooldown_s=COOLDOWN_S, registry=registry
    )
    await store.put(KEY, WAV, 60)  # connected and warm before anything breaks
    yield store
    await store.aclose()


class SilentRedis:
    """Accepts TCP connections and never answers; counts connections and bytes."""

    def __init__(self) -> None:
        self.connections = 0
        self.bytes_received = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while data := await reader.read(65536):
            self.bytes_received += len(data)

    async def aclose(self) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def _elapsed(call: Callable[[], Awaitable[object]]) -> tuple[float, BaseException | None]:
    t0 = time.perf_counter()
    try:
        await call()
    except CacheUnavailable as exc:
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None


async def _assert_fails_fast_during_cooldown(store: RedisCacheStore) -> None:
    for call in (lambda: store.get(KEY), lambda: store.put(KEY, WAV, 60), store.stats, store.purge):
        elapsed, exc = await _elapsed(call)
        assert isinstance(exc, CacheUnavailable)
        assert elapsed < 0.005, f"{elapsed * 1000:.2f} ms during the cool-down"


async def test_paused_redis_fails_within_the_op_timeout_then_fast(
    redis_server: RedisServer, store: RedisCacheStore, registry: CollectorRegistry
) -> None:
    redis_server.pause()
    try:
        elapsed, exc = await _elapsed(lambda: store.get(KEY))
        assert isinstance(exc, CacheUnavailable)
        assert OP_TIMEOUT_S * 0.8 < elapsed < 0.5
        assert store.circuit_open
        await _assert_fails_fast_during_cooldown(store)
        assert registry.get_sample_value("ttsgw_cache_redis_errors_total", {"op": "get"}) == 1.0
        # Calls skipped in the cool-down never reached Redis, so they are not errors.
        assert registry.get_sample_value("ttsgw_cache_redis_errors_total", {"op": "put"}) is None
        assert registry.get_sample_value("ttsgw_cache_circuit_open_total") == 1.0
    finally:
        redis_server.resume()
    await asyncio.sleep(COOLDOWN_S)
    assert await store.get(KEY) == WAV  # Redis is back once the cool-down is over
    assert not store.circuit_open


async def test_a_fresh_client_against_a_paused_redis_is_bounded_too(
    redis_server: RedisServer,
) -> None:
    redis_server.pause()
    store = RedisCacheStore(redis_server.url, op_timeout_s=OP_TIMEOUT_S)
    try:
        elapsed, exc = await _elapsed(lambda: store.get(KEY))
        assert isinstance(exc, CacheUnavailable)
        assert elapsed < 0.5
    finally:
        redis_server.resume()
        await store.aclose()


async def test_killed_redis_fails_fast_and_recovers_after_the_cooldown(
    redis_server: RedisServer, store: RedisCacheStore, registry: CollectorRegistry
) -> None:
    redis_server.kill()
    elapsed, exc = await _elapsed(lambda: store.get(KEY))
    assert isinstance(exc, CacheUnavailable)
    assert elapsed < 0.5
    await _assert_fails_fast_during_cooldown(store)

    # Still dead after the cool-down: the probe fails and the circuit opens again.
    await asyncio.sleep(COOLDOWN_S)
    with pytest.raises(CacheUnavailable):
        await store.get(KEY)
    assert registry.get_sample_value("ttsgw_cache_circuit_open_total") == 2.0

    redis_server.start()  # same port, empty (nothing was persisted)
    with pytest.raises(CacheUnavailable):
        await store.get(KEY)  # still cooling down: Redis is not asked yet
    await asyncio.sleep(COOLDOWN_S)
    assert await store.get(KEY) is None
    await store.put(KEY, WAV, 60)
    assert await store.get(KEY) == WAV
    assert not store.circuit_open


async def test_record_never_raises_when_redis_is_down(
    redis_server: RedisServer, store: RedisCacheStore
) -> None:
    redis_server.pause()
    try:
        t0 = time.perf_counter()
        await store.record("espeak", "hit", 100)  # times out, swallowed, opens the circuit
        await store.record("espeak", "miss")  # skipped
        assert time.perf_counter() - t0 < 0.5
        assert store.circuit_open
    finally:
        redis_server.resume()
    redis_server.kill()
    await asyncio.sleep(COOLDOWN_S)
    await store.record("espeak", "bypass")  # refused, swallowed


async def test_cooldown_does_not_touch_redis_and_one_caller_probes() -> None:
    silent = SilentRedis()
    url = await silent.start()
    store = RedisCacheStore(url, op_timeout_s=OP_TIMEOUT_S, cooldown_s=COOLDOWN_S)
    try:
        with pytest.raises(CacheUnavailable):
            await store.get(KEY)
        await asyncio.sleep(0.02)  # let the listener count what arrived
        seen = (silent.connections, silent.bytes_received)
        assert seen[0] == 1 and seen[1] > 0
        for _ in range(100):
            with pytest.raises(CacheUnavailable):
                await store.get(KEY)
        await asyncio.sleep(0.02)
        assert (silent.connections, silent.bytes_received) == seen

        # After the cool-down, 20 concurrent requests: one probes, the rest skip at once.
        await asyncio.sleep(COOLDOWN_S)
        results = await asyncio.gather(*(_elapsed(lambda: store.get(KEY)) for _ in range(20)))
        assert all(isinstance(exc, CacheUnavailable) for _, exc in results)
        assert sum(1 for elapsed, _ in results if elapsed > OP_TIMEOUT_S * 0.8) == 1
        await asyncio.sleep(0.02)
        assert silent.connections == 2
    finally:
        await store.aclose()
        await silent.aclose()
