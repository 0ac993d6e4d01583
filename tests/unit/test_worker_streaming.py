"""Streamed speech from a worker over real HTTP: OpenAI's SSE events and chunked PCM."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import soundfile as sf

from tests.fakes.fake_engine import FakeToneEngine
from tts_backends import streaming
from tts_backends.server import create_server
from tts_backends.settings import WorkerSettings

SPEECH = "/v1/audio/speech"
# 60 characters of the fake tone: 3 s of 24 kHz PCM16, 144,000 bytes, 5 pieces of 32 KiB.
LONG_TEXT = "streaming is just the same audio, cut into pieces, in order."


async def _client(**kw: object) -> AsyncIterator[tuple[FakeToneEngine, httpx.AsyncClient]]:
    engine = FakeToneEngine()
    settings = WorkerSettings(port=0, max_input_chars=100, log_level="warning", **kw)
    server, _ = create_server(engine, settings)
    async with server.running(), httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield engine, client


@pytest.fixture
async def worker() -> AsyncIterator[tuple[FakeToneEngine, httpx.AsyncClient]]:
    async for pair in _client():
        yield pair


@pytest.fixture
async def paced_worker() -> AsyncIterator[tuple[FakeToneEngine, httpx.AsyncClient]]:
    async for pair in _client(stream_chunk_interval_s=0.1):
        yield pair


def parse_events(text: str) -> list[dict]:
    """An SSE body as its events; every event here is one ``data:`` line."""
    blocks = [b for b in text.split("\n\n") if b]
    assert text.endswith("\n\n")
    events = []
    for block in blocks:
        assert block.startswith("data: ") and "\n" not in block, block[:80]
        events.append(json.loads(block.removeprefix("data: ")))
    return events


def joined_audio(events: list[dict]) -> bytes:
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    return b"".join(base64.b64decode(e["audio"], validate=True) for e in deltas)


def speech(fmt: str, stream_format: str, text: str = LONG_TEXT) -> dict[str, object]:
    return {"model": "m", "input": text, "response_format": fmt, "stream_format": stream_format}


@pytest.mark.parametrize("fmt", ["pcm", "wav", "flac", "mp3", "opus"])
async def test_sse_deltas_decode_to_the_non_streamed_audio(worker, fmt: str) -> None:
    _, client = worker
    whole = await client.post(SPEECH, json=speech(fmt, "audio"))
    assert whole.status_code == 200
    streamed = await client.post(SPEECH, json=speech(fmt, "sse"))
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in streamed.headers
    assert streamed.headers["x-tts-model"] == "m"
    assert streamed.headers["x-tts-engine"] == "fake-tone"
    events = parse_events(streamed.text)
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    # The deltas carry the requested format; joined, they are the file. Ogg gives every
    # file a random stream serial number, so opus is compared by its decoded samples.
    joined = joined_audio(events)
    if fmt == "opus":
        assert len(joined) == len(whole.content)
        assert (sf.read(io.BytesIO(joined))[0] == sf.read(io.BytesIO(whole.content))[0]).all()
    else:
        assert joined == whole.content
    expected = -(-len(whole.content) // streaming.CHUNK_BYTES)
    assert len(events) - 1 == expected


async def test_the_done_event_reports_usage(worker) -> None:
    _, client = worker
    events = parse_events((await client.post(SPEECH, json=speech("pcm", "sse"))).text)
    assert set(events[-1]) == {"type", "usage"}
    usage = events[-1]["usage"]
    assert usage == {
        "input_tokens": len(LONG_TEXT),
        "output_tokens": 75,  # 3 s at 25 speech tokens per second
        "total_tokens": len(LONG_TEXT) + 75,
    }
    assert len(events) == 1 + 5
    assert all(set(e) == {"type", "audio"} for e in events[:-1])


async def test_pcm_audio_is_sent_in_chunked_transfer(worker) -> None:
    _, client = worker
    whole_sse = parse_events((await client.post(SPEECH, json=speech("pcm", "sse"))).text)
    resp = await client.post(SPEECH, json=speech("pcm", "audio"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/pcm"
    assert resp.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in resp.headers
    assert len(resp.content) == 3 * 24_000 * 2
    assert resp.content == joined_audio(whole_sse)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
async def test_whole_file_formats_keep_their_content_length(worker, fmt: str) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json=speech(fmt, "audio"))
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    data, rate = sf.read(io.BytesIO(resp.content))
    assert rate == 24_000 and abs(len(data) / rate - 3.0) < 0.1


async def test_a_paced_stream_delivers_its_first_event_long_before_its_last(paced_worker) -> None:
    _, client = paced_worker
    arrivals: list[tuple[float, dict]] = []
    started = time.perf_counter()
    async with client.stream("POST", SPEECH, json=speech("pcm", "sse")) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line:
                arrivals.append((time.perf_counter() - started, json.loads(line[6:])))
    types = [e["type"] for _, e in arrivals]
    assert types == ["speech.audio.delta"] * 5 + ["speech.audio.done"]
    # Five pauses of 0.1 s between six events: the first was read ~0.5 s before the last.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.4


async def test_paced_pcm_arrives_in_several_pieces(paced_worker) -> None:
    _, client = paced_worker
    pieces: list[bytes] = []
    async with client.stream("POST", SPEECH, json=speech("pcm", "audio")) as resp:
        async for piece in resp.aiter_raw():
            pieces.append(piece)
    assert len(pieces) >= 5
    assert sum(map(len, pieces)) == 3 * 24_000 * 2


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"voice": "nobody"}, 400, "voice"),
        ({"response_format": "aac"}, 400, "response_format"),
        ({"input": "x" * 101}, 413, "input"),
    ],
)
async def test_a_bad_sse_request_is_an_ordinary_json_error(
    worker, body: dict, status: int, param: str
) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json={**speech("pcm", "sse"), **body})
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["param"] == param


async def test_an_engine_failure_before_the_stream_is_a_500_not_a_cut_stream(worker) -> None:
    engine, client = worker
    engine.fail_with = RuntimeError("boom at /secret/path.py")
    resp = await client.post(SPEECH, json=speech("pcm", "sse"))
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    assert "secret" not in resp.text


def test_pieces_cover_the_payload_in_order() -> None:
    payload = bytes(range(256)) * 10
    assert list(streaming.pieces(b"", 4)) == []
    cut = list(streaming.pieces(payload, 1000))
    assert [len(p) for p in cut] == [1000, 1000, 560]
    assert b"".join(cut) == payload
    with pytest.raises(ValueError):
        list(streaming.pieces(payload, 0))


def test_events_are_single_line_data_fields() -> None:
    event = streaming.delta_event(b"\n\n\x00\xff")
    assert event.startswith(b"data: {") and event.endswith(b"}\n\n")
    assert event.count(b"\n") == 2
    done = json.loads(streaming.done_event(streaming.Usage(3, 4))[6:])
    assert done == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
    }
