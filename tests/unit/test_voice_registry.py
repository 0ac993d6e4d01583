"""The voice registry contract, on the in-memory fake and on a real redis-server."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import soundfile as sf
from redis.asyncio import Redis

from tests.fakes.fake_voice_registry import InMemoryVoiceRegistry
from tests.redis_server import RedisServer, _ping, free_port
from tts_backends.errors import (
    BadRequestError,
    InvalidPromptAudioError,
    UnknownVoiceError,
    VoiceRegistryUnavailableError,
)
from tts_backends.voice_registry import (
    INDEX_KEY,
    KEY_PREFIX,
    RedisVoiceRegistry,
    VoiceRegistry,
    create_voice_registry,
    resolve_cloned,
)
from ttsgw import components
from ttsgw_common.cache.redis_store import RedisCacheStore
from ttsgw_contract.cache import CachedResponse


def clip(rate: int = 16_000, seconds: float = 1.5, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[VoiceRegistry]:
    if request.param == "memory":
        yield InMemoryVoiceRegistry()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with Redis.from_url(server.url) as admin:
        await admin.flushdb()
    reg = RedisVoiceRegistry(server.url)
    yield reg
    await reg.aclose()


async def test_create_get_list_delete_round_trip(registry: VoiceRegistry) -> None:
    wav = clip()
    record = await registry.create("Lin", wav, "希望你以后能够做的比我还好呦。")
    assert re.fullmatch(r"voice_[0-9a-f]{12}", record.id)
    assert record.name == "Lin" and record.duration_s == 1.5 and record.created_at > 0

    cloned = await registry.get(record.id)
    assert cloned is not None
    assert (cloned.id, cloned.prompt_wav, cloned.prompt_text) == (
        record.id,
        wav,
        "希望你以后能够做的比我还好呦。",
    )
    assert await registry.record(record.id) == record

    other = await registry.create(None, clip(48_000, 0.5, "FLAC"), "Hello.")
    assert other.name is None and other.id != record.id
    assert {r.id for r in await registry.list()} == {record.id, other.id}

    assert await registry.delete(record.id) is True
    assert await registry.delete(record.id) is False
    assert await registry.get(record.id) is None
    assert await registry.record(record.id) is None
    assert [r.id for r in await registry.list()] == [other.id]


async def test_unknown_ids_are_none(registry: VoiceRegistry) -> None:
    assert await registry.get("voice_000000000000") is None
    assert await registry.record("voice_000000000000") is None
    assert await registry.list() == []


@pytest.mark.parametrize(
    ("wav", "text", "param", "match"),
    [
        (clip(8_000), "hi", "prompt_audio", "16000 Hz"),
        (clip(16_000, 31.0), "hi", "prompt_audio", "at most 30 s"),
        (b"not audio", "hi", "prompt_audio", "WAV or FLAC"),
        (clip(), "", "prompt_text", "empty"),
        (clip(), "   ", "prompt_text", "empty"),
    ],
)
async def test_invalid_voices_name_the_field(
    registry: VoiceRegistry, wav: bytes, text: str, param: str, match: str
) -> None:
    with pytest.raises(BadRequestError, match=match) as info:
        await registry.create("x", wav, text)
    assert info.value.param == param
    assert await registry.list() == []


async def test_a_long_name_is_rejected(registry: VoiceRegistry) -> None:
    with pytest.raises(BadRequestError) as info:
        await registry.create("n" * 200, clip(), "hi")
    assert info.value.param == "name"


async def test_resolve_cloned(registry: VoiceRegistry) -> None:
    record = await registry.create(None, clip(), "transcript")
    assert await resolve_cloned(registry, "alloy") is None
    cloned = await resolve_cloned(registry, record.id)
    assert cloned is not None and cloned.prompt_text == "transcript"
    with pytest.raises(UnknownVoiceError) as info:
        await resolve_cloned(registry, "voice_ffffffffffff")
    assert info.value.param == "voice"
    with pytest.raises(VoiceRegistryUnavailableError, match="TTSGW_WORKER_REDIS_URL"):
        await resolve_cloned(None, record.id)


def test_invalid_prompt_audio_is_the_prompt_audio_error() -> None:
    assert issubclass(InvalidPromptAudioError, BadRequestError)
    assert create_voice_registry(None) is None


# --- Redis specifics ---------------------------------------------------------------


async def test_layout_is_a_hash_per_voice_and_an_index_without_ttls(
    redis_server: RedisServer,
) -> None:
    reg = RedisVoiceRegistry(redis_server.url)
    async with Redis.from_url(redis_server.url) as admin:
        await admin.flushdb()
        record = await reg.create("Amy", clip(), "Hello there.")
        key = KEY_PREFIX + record.id
        assert await admin.type(key) == b"hash"
        assert await admin.smembers(INDEX_KEY) == {record.id.encode()}
        # No TTL: volatile-lru (the embedded Redis's policy) never evicts voices.
        assert await admin.ttl(key) == -1 and await admin.ttl(INDEX_KEY) == -1
        assert await admin.hget(key, "name") == b"Amy"
    await reg.aclose()


async def test_replicas_share_voices_and_see_deletes_at_once(redis_server: RedisServer) -> None:
    a, b = RedisVoiceRegistry(redis_server.url), RedisVoiceRegistry(redis_server.url)
    record = await a.create(None, clip(), "shared")
    first = await b.get(record.id)
    assert first is not None and first.prompt_text == "shared"
    assert await b.get(record.id) == first  # served from b's clip cache
    assert await a.delete(record.id)
    # b cached the clip, yet must not use a voice deleted elsewhere.
    assert await b.get(record.id) is None
    await a.aclose()
    await b.aclose()


async def test_an_index_entry_without_its_hash_is_skipped(redis_server: RedisServer) -> None:
    reg = RedisVoiceRegistry(redis_server.url)
    async with Redis.from_url(redis_server.url) as admin:
        await admin.flushdb()
        record = await reg.create(None, clip(), "kept")
        await admin.sadd(INDEX_KEY, "voice_deadbeef0000")
    assert [r.id for r in await reg.list()] == [record.id]
    await reg.aclose()


async def test_a_dead_redis_is_a_503_naming_the_registry() -> None:
    server = RedisServer().start()
    reg = RedisVoiceRegistry(server.url, op_timeout_s=0.5, connect_timeout_s=0.5)
    try:
        record = await reg.create(None, clip(), "soon gone")
        server.kill()
        for call in (
            reg.get(record.id),
            reg.list(),
            reg.delete(record.id),
            reg.create(None, clip(), "x"),
        ):
            with pytest.raises(VoiceRegistryUnavailableError) as info:
                await call
            assert info.value.status == 503 and info.value.code == "voice_registry_unavailable"
    finally:
        await reg.aclose()
        server.stop()


async def test_a_wedged_redis_times_out_as_a_503() -> None:
    with RedisServer() as server:
        reg = RedisVoiceRegistry(server.url, op_timeout_s=0.2, connect_timeout_s=0.2)
        await reg.list()
        server.pause()
        try:
            with pytest.raises(VoiceRegistryUnavailableError):
                await reg.list()
        finally:
            server.resume()
            await reg.aclose()


# --- the embedded Redis of `ttsgw up` ------------------------------------------------


async def test_embedded_redis_evicts_cache_entries_but_never_voices(tmp_path) -> None:
    """`ttsgw up`'s Redis, as configured, filled past maxmemory with TTL'd cache entries."""
    settings = components.StackSettings(
        state_dir=tmp_path, redis_port=free_port(), redis_maxmemory="4mb"
    )
    component = components.redis(settings)
    assert "volatile-lru" in component.argv
    for worker in (components.espeak_worker(settings), components.cosyvoice3_worker(settings)):
        assert worker.env["TTSGW_WORKER_REDIS_URL"] == settings.effective_redis_url()
    proc = subprocess.Popen(component.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(500):
            if _ping(settings.redis_port):
                break
            await asyncio.sleep(0.01)
        registry = RedisVoiceRegistry(settings.effective_redis_url())
        cache = RedisCacheStore(settings.effective_redis_url())
        voices = [await registry.create(None, clip(16_000, 1.0), f"v{i}") for i in range(5)]
        entry = CachedResponse(body=b"x" * 100_000, content_type="audio/wav", backend="b")
        for i in range(120):  # ~12 MB of entries into 4 MB
            await cache.put(f"ttsgw:cache:v1:test:{i}", entry, ttl_s=3600)
        async with Redis.from_url(settings.effective_redis_url()) as admin:
            info = await admin.info("stats")
            assert info["evicted_keys"] > 0
        for voice in voices:
            assert await registry.get(voice.id) is not None
        await registry.aclose()
        await cache.aclose()
    finally:
        proc.kill()
        proc.wait(timeout=10)
