"""RedisCacheStore against a real redis-server: storage, TTL, stats, purge and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.redis_server import RedisServer
from ttsgw_common.cache.redis_store import RedisCacheStore
from ttsgw_contract.cache import CachedResponse
from ttsgw_contract.cache_keys import request_key

WAV = CachedResponse(body=b"RIFF\x00\nbinary\x00audio", content_type="audio/wav", backend="espeak")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look behind the store's back; the database starts empty."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: RedisServer, raw: aioredis.Redis) -> AsyncIterator[RedisCacheStore]:
    # A roomier op timeout than production: these tests check behaviour, not latency.
    store = RedisCacheStore(redis_server.url, op_timeout_s=0.5)
    yield store
    await store.aclose()


def _key(model: str, n: int = 0, generation: str = "g1") -> str:
    return request_key(model, generation, {"input": f"text {n}"})


async def test_round_trip(store: RedisCacheStore) -> None:
    assert await store.get(_key("espeak")) is None
    await store.put(_key("espeak"), WAV, ttl_s=60)
    assert await store.get(_key("espeak")) == WAV


async def test_ttl_is_set_and_entries_expire(store: RedisCacheStore, raw: aioredis.Redis) -> None:
    await store.put(_key("espeak", 1), WAV, ttl_s=1)
    await store.put(_key("espeak", 2), WAV, ttl_s=3600)
    assert 0 < await raw.pttl(_key("espeak", 1)) <= 1000
    assert 3590 < await raw.ttl(_key("espeak", 2)) <= 3600
    await asyncio.sleep(1.1)
    assert await store.get(_key("espeak", 1)) is None
    assert await store.get(_key("espeak", 2)) == WAV


async def test_zero_ttl_is_never_stored(store: RedisCacheStore, raw: aioredis.Redis) -> None:
    await store.put(_key("espeak"), WAV, ttl_s=0)
    assert await raw.exists(_key("espeak")) == 0


async def test_a_large_binary_body_survives(store: RedisCacheStore) -> None:
    big = CachedResponse(body=bytes(range(256)) * 32768, content_type="audio/flac", backend="b")
    await store.put(_key("espeak"), big, ttl_s=60)  # 8 MiB, the default max_entry_bytes
    assert await store.get(_key("espeak")) == big


async def test_an_undecodable_entry_is_a_miss(store: RedisCacheStore, raw: aioredis.Redis) -> None:
    await raw.set(_key("espeak"), b"not json\nbody")
    assert await store.get(_key("espeak")) is None
    assert not store.circuit_open


async def test_stats_count_per_model_in_a_shared_hash(
    redis_server: RedisServer, store: RedisCacheStore, raw: aioredis.Redis
) -> None:
    assert await store.stats() == {}
    other = RedisCacheStore(redis_server.url, op_timeout_s=0.5)  # a second filter instance
    try:
        await store.record("espeak", "hit", nbytes=1000)
        await other.record("espeak", "hit", nbytes=500)
        await other.record("espeak", "miss", nbytes=123)  # only hits are bytes served
        await store.record("espeak", "miss")
        await store.record("mix", "bypass")
        stats = await other.stats()
    finally:
        await other.aclose()
    assert stats == {
        "espeak": {
            "hits": 2.0,
            "misses": 2.0,
            "bypasses": 0.0,
            "bytes_served": 1500.0,
            "hit_ratio": 0.5,
        },
        "mix": {"hits": 0.0, "misses": 0.0, "bypasses": 1.0, "bytes_served": 0.0, "hit_ratio": 0.0},
    }
    assert await raw.hgetall("ttsgw:cache:stats:espeak") == {
        b"hits": b"2",
        b"misses": b"2",
        b"bytes_served": b"1500",
    }


async def test_purge_one_model_then_all(store: RedisCacheStore, raw: aioredis.Redis) -> None:
    for n in range(3):
        await store.put(_key("espeak", n), WAV, 60)
        await store.put(_key("espeak-v2", n, generation="g9"), WAV, 60)  # a prefix neighbour
    await store.record("espeak", "hit", 10)
    assert await store.purge("espeak") == 3
    assert await store.get(_key("espeak", 0)) is None
    assert await store.get(_key("espeak-v2", 0, generation="g9")) == WAV
    assert await store.purge("espeak") == 0
    assert await store.purge() == 3
    assert await raw.keys("ttsgw:cache:v1:*") == []
    assert (await store.stats())["espeak"]["hits"] == 1.0  # purging entries keeps counters


async def test_purge_pages_through_many_keys(store: RedisCacheStore, raw: aioredis.Redis) -> None:
    async with raw.pipeline(transaction=False) as pipe:
        for n in range(2500):
            pipe.set(_key("espeak", n), b"{}\n", ex=60)
        pipe.set("unrelated:key", b"keep")
        await pipe.execute()
    assert await store.purge() == 2500
    assert await raw.dbsize() == 1
