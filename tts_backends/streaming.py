"""Streamed speech bodies: OpenAI's SSE events and chunked audio, cut from encoded bytes.

Engines synthesise whole utterances today (incremental generation is the worker
scheduler's job), so a stream is the encoded file cut into pieces:

- ``stream_format: "sse"``: one ``speech.audio.delta`` event per piece, whose ``audio``
  is the base64 of that piece of the file in the requested ``response_format``, then one
  ``speech.audio.done`` with the usage. Concatenating the decoded deltas gives exactly
  the bytes a non-streamed request gets.
- ``stream_format: "audio"`` with ``pcm``: the raw samples in chunked transfer. Other
  formats go out whole with a ``content-length``: WAV carries its size in the header,
  and libsndfile writes flac, mp3 and opus as complete files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

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
