"""The worker HTTP contract over real HTTP, with a torch-free fake engine behind it."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.fakes.fake_engine import FakeToneEngine
from tts_backends.server import WorkerServer, create_server
from tts_backends.settings import WorkerSettings
from ttsgw_contract.limits import MAX_SPEED, MIN_SPEED

SPEECH = "/v1/audio/speech"


def settings(**kw: Any) -> WorkerSettings:
    return WorkerSettings(port=0, max_input_chars=100, log_level="warning", **kw)


@pytest.fixture
async def worker() -> AsyncIterator[tuple[FakeToneEngine, httpx.AsyncClient]]:
    engine = FakeToneEngine()
    server, port = create_server(engine, settings())
    assert port > 0
    async with server.running(), httpx.AsyncClient(base_url=server.url) as client:
        yield engine, client


def assert_openai_error(resp: httpx.Response, status: int, param: str | None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["message"] and "Traceback" not in error["message"]
    return error


async def test_speech_returns_24k_wav_from_a_16k_engine(worker) -> None:
    engine, client = worker
    resp = await client.post(SPEECH, json={"model": "m", "input": "hello", "voice": "alloy"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/wav"
    assert resp.headers["x-tts-engine"] == "fake-tone"
    assert resp.headers["x-tts-model"] == "m"
    samples, rate = sf.read(io.BytesIO(resp.content))
    assert rate == 24_000
    assert abs(samples.size / rate - 0.25) < 0.01  # 5 chars * 0.05 s
    assert engine.requests[-1].voice == "tone-a"


@pytest.mark.parametrize(("fmt", "ctype"), [("pcm", "audio/pcm"), ("flac", "audio/flac")])
async def test_formats_and_content_types(worker, fmt: str, ctype: str) -> None:
    _, client = worker
    body = {"model": "m", "input": "hi there", "response_format": fmt}
    resp = await client.post(SPEECH, json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == ctype
    if fmt == "pcm":
        assert len(resp.content) == int(24_000 * 0.4) * 2


async def test_extensions_and_unknown_fields_reach_the_engine(worker) -> None:
    engine, client = worker
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16_000, dtype=np.float32), 16_000, format="WAV")
    body = {
        "model": "m",
        "input": "abc",
        "voice": "tone-b",
        "speed": 2.0,
        "instructions": "slowly",
        "prompt_audio": base64.b64encode(buf.getvalue()).decode(),
        "prompt_text": "reference words",
        "some_future_openai_field": {"x": 1},
    }
    resp = await client.post(SPEECH, json=body)
    assert resp.status_code == 200, resp.text
    req = engine.requests[-1]
    assert (req.voice, req.speed, req.instructions, req.prompt_text) == (
        "tone-b",
        2.0,
        "slowly",
        "reference words",
    )
    assert req.prompt_wav == buf.getvalue()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "x", "speed": 9}, "speed"),
        ({"model": "m", "input": "x", "speed": 0.1}, "speed"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": " \n"}, "input"),
        ({"model": "m", "input": "x", "voice": ""}, "voice"),
        ({"input": "x"}, "model"),
        ({"model": "m", "input": "x", "voice": "nobody"}, "voice"),
        ({"model": "m", "input": "x", "response_format": "aac"}, "response_format"),
        ({"model": "m", "input": "x", "stream_format": "bogus"}, "stream_format"),
        ({"model": "m", "input": "x", "prompt_audio": "!!"}, "prompt_audio"),
    ],
)
async def test_bad_input_is_400_naming_the_field(worker, body: dict, param: str) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json=body)
    error = assert_openai_error(resp, 400, param)
    assert error["type"] == "invalid_request_error"
    assert resp.headers["x-tts-engine"] == "fake-tone"


@pytest.mark.parametrize("speed", [MIN_SPEED, MAX_SPEED])
async def test_every_speed_the_policy_can_allow_is_accepted(worker, speed: float) -> None:
    engine, client = worker
    resp = await client.post(SPEECH, json={"model": "m", "input": "x", "speed": speed})
    assert resp.status_code == 200, resp.text
    assert engine.requests[-1].speed == speed


@pytest.mark.parametrize(
    "speed", [MIN_SPEED - 0.01, MAX_SPEED + 0.01, True, "1.5", 10**400, None, [1.0]]
)
async def test_speed_beyond_the_engines_or_not_a_number_is_400(worker, speed: object) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json={"model": "m", "input": "x", "speed": speed})
    assert assert_openai_error(resp, 400, "speed")["code"] == "invalid_value"


# A lone surrogate, as a JSON escape and as the raw (CESU-8) bytes json.loads lets through.
LONE_SURROGATES = [b'"a\\ud800b"', b'"\\udfff"', b'"a\xed\xa0\x80"']


@pytest.mark.parametrize("field", ["model", "input", "voice", "instructions", "prompt_text"])
@pytest.mark.parametrize("spelling", LONE_SURROGATES)
async def test_unencodable_text_is_400_naming_the_field(
    worker, field: str, spelling: bytes
) -> None:
    engine, client = worker
    fields = {"model": b'"m"', "input": b'"hello"', field: spelling}
    body = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    before = len(engine.requests)
    resp = await client.post(SPEECH, content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(resp, 400, field)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_text")
    assert "U+D800" in error["message"] or "U+DFFF" in error["message"]
    assert len(engine.requests) == before


async def test_unsupported_format_message_lists_formats(worker) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json={"model": "m", "input": "x", "response_format": "aac"})
    message = assert_openai_error(resp, 400, "response_format")["message"]
    assert "wav" in message and "pcm" in message and "flac" in message


async def test_malformed_json_is_400(worker) -> None:
    _, client = worker
    headers = {"content-type": "application/json"}
    resp = await client.post(SPEECH, content=b"{not json", headers=headers)
    assert_openai_error(resp, 400, None)


async def test_input_too_long_is_413(worker) -> None:
    _, client = worker
    resp = await client.post(SPEECH, json={"model": "m", "input": "x" * 101})
    error = assert_openai_error(resp, 413, "input")
    assert "100" in error["message"]


async def test_engine_failure_is_500_without_internals(worker) -> None:
    engine, client = worker
    engine.fail_with = RuntimeError("CUDA out of memory at /secret/path.py:12")
    resp = await client.post(SPEECH, json={"model": "m", "input": "x"})
    error = assert_openai_error(resp, 500, None)
    assert error["type"] == "server_error"
    assert "/secret/path.py" not in error["message"]


async def test_unknown_route_keeps_the_error_shape_and_header(worker) -> None:
    _, client = worker
    resp = await client.get("/nope")
    assert_openai_error(resp, 404, None)
    assert resp.headers["x-tts-engine"] == "fake-tone"


async def test_voices_health_and_metrics(worker) -> None:
    _, client = worker
    voices = (await client.get("/v1/audio/voices")).json()
    assert voices["voices"][0] == {"id": "tone-a", "name": "Tone A", "language": "en"}
    assert voices["openai_aliases"]["alloy"] == "tone-a"
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200
    await client.post(SPEECH, json={"model": "m", "input": "hello"})
    await client.post(SPEECH, json={"model": "m", "input": "x", "speed": 99})
    text = (await client.get("/metrics")).text
    assert 'tts_worker_requests_total{engine="fake-tone",outcome="ok"}' in text
    assert 'tts_worker_requests_total{engine="fake-tone",outcome="bad_request"} 1.0' in text
    assert "tts_worker_synthesis_seconds_bucket" in text
    lines = text.splitlines()
    audio_line = next(ln for ln in lines if ln.startswith("tts_worker_audio_seconds_total"))
    # Warm-up is not a request: only "hello" (0.25 s) is counted.
    assert float(audio_line.split()[-1]) == pytest.approx(0.25, abs=0.01)


async def test_not_ready_is_503_until_the_engine_loads() -> None:
    gate = asyncio.Event()
    engine = FakeToneEngine(load_gate=gate)
    server, _ = create_server(engine, settings())
    async with server.running(wait_ready=None), httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        resp = await client.post(SPEECH, json={"model": "m", "input": "x"})
        assert_openai_error(resp, 503, None)
        gate.set()
        await server._wait_ready(5)
        assert (await client.get("/ready")).status_code == 200
        assert (await client.post(SPEECH, json={"model": "m", "input": "x"})).status_code == 200


async def test_each_app_has_its_own_metrics_registry() -> None:
    a, _ = create_server(FakeToneEngine(), settings())
    b, _ = create_server(FakeToneEngine(), settings())
    try:
        assert a.app.state.metrics.registry is not b.app.state.metrics.registry
    finally:
        a.socket.close()
        b.socket.close()


def test_server_binds_a_free_port() -> None:
    server, port = create_server(FakeToneEngine(), settings())
    try:
        assert isinstance(server, WorkerServer)
        assert server.url == f"http://127.0.0.1:{port}"
    finally:
        server.socket.close()
