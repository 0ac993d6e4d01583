"""The in-memory CacheStore fake honours the same semantics as the Redis store."""

from __future__ import annotations

import pytest

from gateway.cache.memory import MemoryCacheStore
from ttsgw_contract.cache import CachedResponse, CacheUnavailable
from ttsgw_contract.cache_keys import request_key

WAV = CachedResponse(body=b"RIFF-audio", content_type="audio/wav", backend="espeak")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key(model: str, n: int = 0, generation: str = "g1") -> str:
    return request_key(model, generation, {"input": f"text {n}"})


async def test_round_trip_and_ttl_expiry() -> None:
    clock = Clock()
    store = MemoryCacheStore(clock=clock)
    await store.put(_key("espeak"), WAV, ttl_s=10)
    assert await store.get(_key("espeak")) == WAV
    clock.now += 9.9
    assert await store.get(_key("espeak")) == WAV
    clock.now += 0.1
    assert await store.get(_key("espeak")) is None
    assert store.entry_count() == 0


async def test_zero_ttl_is_never_stored() -> None:
    store = MemoryCacheStore()
    await store.put(_key("espeak"), WAV, ttl_s=0)
    assert await store.get(_key("espeak")) is None
    assert store  # an empty store is still truthy


async def test_stats_and_hit_ratio() -> None:
    store = MemoryCacheStore()
    assert await store.stats() == {}
    for _ in range(3):
        await store.record("espeak", "hit", nbytes=100)
    await store.record("espeak", "miss", nbytes=999)  # only hits count as served
    await store.record("mix", "bypass")
    stats = await store.stats()
    assert stats["espeak"] == {
        "hits": 3.0,
        "misses": 1.0,
        "bypasses": 0.0,
        "bytes_served": 300.0,
        "hit_ratio": 0.75,
    }
    assert stats["mix"]["bypasses"] == 1.0
    assert stats["mix"]["hit_ratio"] == 0.0


async def test_purge_one_model_or_all() -> None:
    clock = Clock()
    store = MemoryCacheStore(clock=clock)
    for n in range(3):
        await store.put(_key("espeak", n), WAV, 60)
        await store.put(_key("espeak-v2", n), WAV, 60)
    await store.put(_key("cosyvoice3", generation="g2"), WAV, 1)
    clock.now += 5  # the cosyvoice3 entry has expired: it is not counted as purged
    assert await store.purge("espeak") == 3
    assert await store.get(_key("espeak", 0)) is None
    assert await store.get(_key("espeak-v2", 0)) == WAV
    assert await store.purge() == 3
    assert store.entry_count() == 0


async def test_down_store_fails_like_a_dead_redis() -> None:
    store = MemoryCacheStore()
    store.down = True
    with pytest.raises(CacheUnavailable):
        await store.get(_key("espeak"))
    with pytest.raises(CacheUnavailable):
        await store.put(_key("espeak"), WAV, 60)
    with pytest.raises(CacheUnavailable):
        await store.stats()
    with pytest.raises(CacheUnavailable):
        await store.purge()
    await store.record("espeak", "hit", 10)  # never raises
    store.down = False
    assert await store.stats() == {}
    await store.aclose()
    assert store.closed
