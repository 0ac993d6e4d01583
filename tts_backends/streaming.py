"""Streamed speech bodies: OpenAI's SSE events and chunked audio.

- ``pcm``: raw samples go out as the engine makes them (the scheduler hands over audio
  chunk by chunk), in pieces of at most ``CHUNK_BYTES``: chunked transfer for
  ``stream_format: "audio"``, one ``speech.audio.delta`` per piece for ``"sse"``.
- Container formats are encoded whole first (WAV carries its size in the header, and
  libsndfile writes flac, mp3 and opus as complete files), then cut into pieces the same
  way. Either way, concatenating the decoded deltas gives exactly the bytes a
  non-streamed request gets, and the stream ends with one ``speech.audio.done`` carrying
  the usage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from .audio import OUTPUT_RATE as PCM_RATE

SSE_MEDIA_TYPE = "text/event-stream"
# Big enough that per-piece overhead is noise, small enough that a client can start
# playing raw PCM after ~0.7 s of 24 kHz audio instead of waiting for the whole file.
CHUNK_BYTES = 32 * 1024
# The response formats whose bytes are sent in chunked transfer for stream_format=audio.
CHUNKED_AUDIO_FORMATS = frozenset({"pcm"})
# There is no tokenizer in the HTTP layer; audio "tokens" are counted at CosyVoice3's
# speech-token rate, so the numbers are comparable across engines.
SPEECH_TOKENS_PER_SECOND = 25


@dataclass(frozen=True)
class Usage:
    """The usage of ``speech.audio.done``: input characters and speech tokens of output."""

    input_tokens: int
    output_tokens: int

    @classmethod
    def of(cls, text: str, seconds: float) -> Usage:
        return cls(
            input_tokens=len(text), output_tokens=math.ceil(seconds * SPEECH_TOKENS_PER_SECOND)
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def pieces(payload: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``payload`` in consecutive pieces of ``size`` bytes (an even size keeps PCM16 aligned)."""
    if size < 1:
        raise ValueError("piece size must be positive")
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def sse_event(event: dict[str, object]) -> bytes:
    # Compact JSON on one line: a ``data:`` field must not contain a newline.
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def delta_event(piece: bytes) -> bytes:
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()})


def done_event(usage: Usage) -> bytes:
    return sse_event({"type": "speech.audio.done", "usage": usage.as_dict()})


def sse_events(payload: bytes, usage: Usage, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The whole event stream of one utterance: its deltas, then ``speech.audio.done``."""
    for piece in pieces(payload, size):
        yield delta_event(piece)
    yield done_event(usage)


async def paced(items: Iterable[bytes], interval_s: float = 0.0) -> AsyncIterator[bytes]:
    """``items`` as an async stream, ``interval_s`` apart (0: as fast as the client reads)."""
    for i, item in enumerate(items):
        if i and interval_s > 0:
            await asyncio.sleep(interval_s)
        yield item


async def pieces_async(
    chunks: AsyncIterable[bytes], size: int = CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """Each chunk as it arrives, cut into pieces of at most ``size`` bytes."""
    async for chunk in chunks:
        for piece in pieces(chunk, size):
            yield piece


async def sse_stream(
    pcm: AsyncIterable[bytes], text: str, size: int = CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """Live SSE of PCM16 at 24 kHz: a delta per piece, then ``done`` with the usage."""
    total = 0
    async for piece in pieces_async(pcm, size):
        total += len(piece)
        yield delta_event(piece)
    yield done_event(Usage.of(text, total / (2 * PCM_RATE)))


async def paced_async(items: AsyncIterable[bytes], interval_s: float = 0.0) -> AsyncIterator[bytes]:
    """``items`` passed on, ``interval_s`` apart (0: as fast as they come)."""
    first = True
    async for item in items:
        if not first and interval_s > 0:
            await asyncio.sleep(interval_s)
        first = False
        yield item
