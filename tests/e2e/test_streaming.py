"""Streamed speech for real: SSE and chunked PCM through Envoy, the filter and Redis.

The workers pace their pieces (``TTSGW_WORKER_STREAM_CHUNK_INTERVAL_S``) so that a stream
Envoy passed through piece by piece is told apart, by timing, from one it buffered whole.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from tests.e2e import test_gateway as gw
from tests.e2e.stack import Stack
from tests.e2e.test_cache import worker_syntheses

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

INTERVAL_S = 0.1
PACING_ENV = "TTSGW_WORKER_STREAM_CHUNK_INTERVAL_S"
# About 5 s of espeak speech: 240 KB of PCM, 8 pieces of 32 KiB.
TEXT = (
    "Streaming speech through the gateway, one piece after another, "
    "so that playback can start before the last word has even arrived."
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("streaming-stack")))
    saved = os.environ.get(PACING_ENV)
    os.environ[PACING_ENV] = str(INTERVAL_S)  # read by the workers when they start
    try:
        await stack.start_all()
        await gw.wait_routable(stack, "espeak")
    except BaseException:
        print(stack.logs())
        await stack.stop()
        raise
    finally:
        if saved is None:
            os.environ.pop(PACING_ENV, None)
        else:
            os.environ[PACING_ENV] = saved
    yield stack
    await stack.stop()


def sdk(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.gateway + "/v1", api_key="unused", max_retries=0)


async def sse_through_the_sdk(
    client: openai.AsyncOpenAI, text: str, fmt: str = "pcm"
) -> tuple[httpx.Headers, list[tuple[float, dict]], bytes]:
    """One SSE request: its headers, each event with its arrival time, the raw body."""
    arrivals: list[tuple[float, dict]] = []
    lines: list[str] = []
    started = time.perf_counter()
    async with client.audio.speech.with_streaming_response.create(
        model="espeak", voice="alloy", input=text, response_format=fmt, stream_format="sse"
    ) as response:
        headers = response.headers
        async for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data: "):
                arrivals.append((time.perf_counter() - started, json.loads(line[6:])))
    body = "".join(f"{line}\n" if line else "\n" for line in lines).encode()
    return headers, arrivals, body


def audio_of(events: list[dict]) -> bytes:
    return b"".join(
        base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"
    )


async def test_sse_through_the_sdk_streams_then_a_repeat_is_a_cache_hit(stack: Stack) -> None:
    port = stack.settings.espeak_port
    before = await worker_syntheses(stack, port)
    client = sdk(stack)
    try:
        head, events, _ = await sse_through_the_sdk(client, TEXT)
        again_head, again_events, _ = await sse_through_the_sdk(client, TEXT)
        whole = await client.audio.speech.create(
            model="espeak", voice="alloy", input=TEXT, response_format="pcm"
        )
    finally:
        await client.close()

    assert head["content-type"].startswith("text/event-stream")
    assert "content-length" not in head
    assert (head["x-tts-cache"], head["x-tts-backend"]) == ("miss", "espeak")
    types = [e["type"] for _, e in events]
    assert len(types) >= 5, types
    assert types == ["speech.audio.delta"] * (len(types) - 1) + ["speech.audio.done"]
    usage = events[-1][1]["usage"]
    assert usage["input_tokens"] == len(TEXT)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > len(TEXT)
    # Envoy and the filter (which copies the leader's body for the cache) pass each piece
    # on as it comes: the first event reached the client long before the last was sent.
    spread = events[-1][0] - events[0][0]
    assert spread >= (len(events) - 1) * INTERVAL_S * 0.6, spread

    # The repeat is answered by the filter from Redis: the same events, all at once.
    assert again_head["x-tts-cache"] == "hit"
    assert again_head["content-type"].startswith("text/event-stream")
    assert [e for _, e in again_events] == [e for _, e in events]
    assert again_events[-1][0] - again_events[0][0] < (len(events) - 1) * INTERVAL_S * 0.5
    # Two SSE requests and one audio request: two syntheses, not three.
    assert await worker_syntheses(stack, port) - before == 2

    pcm = audio_of([e for _, e in events])
    assert len(pcm) > 100_000 and len(pcm) % 2 == 0
    assert pcm == whole.content  # the same audio as the non-streamed answer


async def test_a_cached_sse_body_is_byte_identical_to_the_streamed_one(stack: Stack) -> None:
    text = "Byte for byte, the cached event stream is the one the worker sent."
    body = {"model": "espeak", "input": text, "response_format": "wav", "stream_format": "sse"}
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30, trust_env=False) as client:
        first = await client.post("/v1/audio/speech", json=body)
        second = await client.post("/v1/audio/speech", json=body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert [first.headers["x-tts-cache"], second.headers["x-tts-cache"]] == ["miss", "hit"]
    assert first.content == second.content
    assert first.content.endswith(b"\n\n") and b'"speech.audio.done"' in first.content
    events = [json.loads(b[6:]) for b in first.content.split(b"\n\n") if b]
    wav = audio_of(events)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"


async def test_pcm_audio_arrives_in_chunks_through_envoy(stack: Stack) -> None:
    text = "Raw samples are played as they come; nothing waits for the end of the file."
    body = {"model": "espeak", "input": text, "response_format": "pcm"}
    arrivals: list[tuple[float, int]] = []
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30, trust_env=False) as client:
        started = time.perf_counter()
        async with client.stream("POST", "/v1/audio/speech", json=body) as response:
            assert response.status_code == 200
            headers = response.headers
            async for piece in response.aiter_raw():
                arrivals.append((time.perf_counter() - started, len(piece)))
        hit = await client.post("/v1/audio/speech", json=body)
    assert headers["content-type"] == "audio/pcm"
    assert headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in headers
    assert headers["x-tts-cache"] == "miss"
    total = sum(n for _, n in arrivals)
    pieces = -(-total // (32 * 1024))
    assert pieces >= 3 and len(arrivals) >= pieces
    assert arrivals[-1][0] - arrivals[0][0] >= (pieces - 1) * INTERVAL_S * 0.6
    # Filled once complete: the repeat is a hit with the same samples.
    assert hit.headers["x-tts-cache"] == "hit"
    assert len(hit.content) == total
