"""The voice registry (POST /v1/voices): cloned voices in Redis, shared by every worker replica.

Layout, one hash per voice plus an index set, so listing never scans the keyspace:

    ttsgw:voice:v1:<id>   hash  name, prompt_text, prompt_wav, created_at, duration_s
    ttsgw:voices:v1       set   every id

Voices never expire, which is why the embedded Redis evicts with ``volatile-lru``
(docs/decisions.md). Records are immutable, so a replica keeps the clips it fetched and
asks Redis only whether the voice still exists; a DELETE on one replica is seen at once
by all of them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import soundfile as sf
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .audio import validate_prompt_audio
from .engines.base import ClonedVoice
from .errors import BadRequestError, UnknownVoiceError, VoiceRegistryUnavailableError

T = TypeVar("T")

VOICE_ID_PREFIX = "voice_"
KEY_PREFIX = "ttsgw:voice:v1:"
INDEX_KEY = "ttsgw:voices:v1"
MAX_NAME_CHARS = 128
MAX_PROMPT_TEXT_CHARS = 1000
REDIS_URL_SETTING = "TTSGW_WORKER_REDIS_URL"


@dataclass(frozen=True)
class VoiceRecord:
    """What the API shows of a voice: never the clip itself."""

    id: str
    name: str | None
    created_at: int
    duration_s: float


class VoiceRegistry(Protocol):
    async def create(self, name: str | None, prompt_wav: bytes, prompt_text: str) -> VoiceRecord:
        """Validate and store a voice; raises BadRequestError naming the field."""
        ...

    async def get(self, voice_id: str) -> ClonedVoice | None: ...

    async def record(self, voice_id: str) -> VoiceRecord | None: ...

    async def list(self) -> builtins.list[VoiceRecord]: ...

    async def delete(self, voice_id: str) -> bool: ...

    async def aclose(self) -> None: ...


def new_voice_id() -> str:
    return f"{VOICE_ID_PREFIX}{secrets.token_hex(6)}"


def is_voice_id(name: str) -> bool:
    return name.startswith(VOICE_ID_PREFIX)


def check_voice(name: str | None, prompt_wav: bytes, prompt_text: str) -> tuple[str | None, float]:
    """Validate a new voice (clip >= 16 kHz, <= 30 s; a transcript); return (name, seconds)."""
    validate_prompt_audio(prompt_wav)
    if not prompt_text or not prompt_text.strip():
        raise BadRequestError(
            "prompt_text must be the transcript of prompt_audio; it is empty.", param="prompt_text"
        )
    if len(prompt_text) > MAX_PROMPT_TEXT_CHARS:
        raise BadRequestError(
            f"prompt_text is {len(prompt_text)} characters; the limit is {MAX_PROMPT_TEXT_CHARS}.",
            param="prompt_text",
        )
    name = name.strip() if name else None
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise BadRequestError(
            f"name is {len(name)} characters; the limit is {MAX_NAME_CHARS}.", param="name"
        )
    info = sf.info(io.BytesIO(prompt_wav))
    return name or None, round(info.frames / info.samplerate, 3)


async def resolve_cloned(registry: VoiceRegistry | None, voice: str) -> ClonedVoice | None:
    """The registered voice a speech request names, or None when `voice` is no registry id."""
    if not is_voice_id(voice):
        return None
    if registry is None:
        raise VoiceRegistryUnavailableError(
            f"voice {voice!r} is a registered voice, but this worker has no voice registry; "
            f"set {REDIS_URL_SETTING}."
        )
    cloned = await registry.get(voice)
    if cloned is None:
        raise UnknownVoiceError(
            f"Unknown voice {voice!r}: no registered voice has this id. See GET /v1/voices."
        )
    return cloned


class RedisVoiceRegistry:
    """``VoiceRegistry`` on ``redis.asyncio``; every Redis failure becomes a 503."""

    def __init__(
        self,
        url: str,
        *,
        op_timeout_s: float = 2.0,
        connect_timeout_s: float = 1.0,
        max_cached: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = Redis.from_url(
            url, socket_timeout=op_timeout_s, socket_connect_timeout=connect_timeout_s
        )
        self._budget_s = op_timeout_s + connect_timeout_s
        self._clock = clock
        # Clips already fetched; records never change, so only existence needs asking.
        self._clips: OrderedDict[str, ClonedVoice] = OrderedDict()
        self._max_cached = max_cached

    async def create(self, name: str | None, prompt_wav: bytes, prompt_text: str) -> VoiceRecord:
        name, duration_s = check_voice(name, prompt_wav, prompt_text)
        record = VoiceRecord(new_voice_id(), name, int(self._clock()), duration_s)

        async def store() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    KEY_PREFIX + record.id,
                    mapping={
                        "name": name or "",
                        "prompt_text": prompt_text,
                        "prompt_wav": prompt_wav,
                        "created_at": record.created_at,
                        "duration_s": duration_s,
                    },
                )
                pipe.sadd(INDEX_KEY, record.id)
                await pipe.execute()

        await self._call("create", store)
        return record

    async def get(self, voice_id: str) -> ClonedVoice | None:
        key = KEY_PREFIX + voice_id
        cached = self._clips.get(voice_id)
        if cached is not None:
            if not await self._call("get", lambda: self._redis.exists(key)):
                self._clips.pop(voice_id, None)
                return None
            self._clips.move_to_end(voice_id)
            return cached
        values = await self._call(
            "get", lambda: self._redis.hmget(key, ["prompt_wav", "prompt_text"])
        )
        wav, text = values
        if wav is None or text is None:
            return None
        clip = wav if isinstance(wav, bytes) else wav.encode("latin-1")
        voice = ClonedVoice(id=voice_id, prompt_wav=clip, prompt_text=_text(text))
        self._clips[voice_id] = voice
        while len(self._clips) > self._max_cached:
            self._clips.popitem(last=False)
        return voice

    async def record(self, voice_id: str) -> VoiceRecord | None:
        rows = await self._records([voice_id])
        return rows[0] if rows else None

    async def list(self) -> builtins.list[VoiceRecord]:
        members = await self._call("list", lambda: self._redis.smembers(INDEX_KEY))
        ids = sorted(_text(i) for i in members)
        rows = await self._records(ids)
        return sorted(rows, key=lambda r: (r.created_at, r.id))

    async def delete(self, voice_id: str) -> bool:
        async def remove() -> int:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(KEY_PREFIX + voice_id)
                pipe.srem(INDEX_KEY, voice_id)
                deleted, _ = await pipe.execute()
                return int(deleted)

        self._clips.pop(voice_id, None)
        return bool(await self._call("delete", remove))

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _records(self, ids: builtins.list[str]) -> builtins.list[VoiceRecord]:
        if not ids:
            return []

        async def fetch() -> builtins.list[builtins.list[bytes | None]]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for voice_id in ids:
                    pipe.hmget(KEY_PREFIX + voice_id, ["name", "created_at", "duration_s"])
                return list(await pipe.execute())

        rows = await self._call("list", fetch)
        out = []
        for voice_id, (name, created_at, duration_s) in zip(ids, rows, strict=True):
            # An id in the index without its hash is a voice deleted mid-listing.
            if created_at is None:
                continue
            out.append(
                VoiceRecord(
                    id=voice_id,
                    name=_text(name) or None if name else None,
                    created_at=int(created_at),
                    duration_s=float(duration_s or 0.0),
                )
            )
        return out

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._budget_s):
                return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            raise VoiceRegistryUnavailableError(
                f"the voice registry (Redis) failed to {op}: {type(exc).__name__}; retry shortly."
            ) from exc


def _text(value: bytes | str) -> str:
    # The client keeps bytes (clips are binary), so every text field comes back encoded.
    return value.decode() if isinstance(value, bytes) else value


def create_voice_registry(redis_url: str | None) -> VoiceRegistry | None:
    """The registry a worker uses: Redis when configured, else none (routes answer 503)."""
    return RedisVoiceRegistry(redis_url) if redis_url else None
