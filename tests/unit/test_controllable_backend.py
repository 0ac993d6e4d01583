"""The controllable test backend itself: its exact error share, latency, readiness and counts."""

from __future__ import annotations

import io
import time
import wave

import httpx

from tests.fakes.controllable_backend import NAME_HEADER, Behaviour, create_app


def _client() -> httpx.AsyncClient:
    app = create_app(Behaviour("canary"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_speech_is_a_small_wav_and_voices_follow_the_worker_contract() -> None:
    async with _client() as client:
        speech = await client.post("/v1/audio/speech", json={"model": "m", "input": "hi"})
        voices = await client.get("/v1/audio/voices")
        health, ready = await client.get("/health"), await client.get("/ready")
    assert speech.status_code == 200
    assert speech.headers["content-type"] == "audio/wav"
    assert speech.headers[NAME_HEADER] == "canary"
    with wave.open(io.BytesIO(speech.content)) as audio:
        assert (audio.getframerate(), audio.getnchannels()) == (24_000, 1)
        assert audio.getnframes() == 2_400
    assert voices.json()["voices"][0]["id"] == "test"
    assert (health.status_code, ready.status_code) == (200, 200)


async def test_error_rate_is_an_exact_share_of_openai_shaped_500s() -> None:
    async with _client() as client:
        state = await client.post("/control", json={"error_rate": 0.2})
        assert state.json()["error_rate"] == 0.2
        statuses = [
            (await client.post("/v1/audio/speech", json={"input": "x"})).status_code
            for _ in range(50)
        ]
        failed = await client.get("/v1/audio/voices")  # request 51: not a multiple of 5
        counts = (await client.get("/control")).json()
    assert statuses.count(500) == 10
    assert [i for i, s in enumerate(statuses, 1) if s == 500] == list(range(5, 51, 5))
    assert failed.status_code == 200
    assert counts["requests"] == 51
    assert counts["errors_5xx"] == 10
    assert counts["by_path"] == {
        "/v1/audio/speech": {"200": 40, "500": 10},
        "/v1/audio/voices": {"200": 1},
    }


async def test_injected_failure_body_and_reset() -> None:
    async with _client() as client:
        await client.post("/control", json={"error_rate": 1.0})
        failed = await client.post("/v1/audio/speech", json={"input": "x"})
        reset = (await client.post("/control", json={"error_rate": 0, "reset": True})).json()
        ok = await client.post("/v1/audio/speech", json={"input": "x"})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "injected"
    assert failed.headers[NAME_HEADER] == "canary"
    assert (reset["requests"], reset["errors_5xx"], reset["by_path"]) == (0, 0, {})
    assert ok.status_code == 200


async def test_latency_and_readiness_are_set_at_runtime() -> None:
    async with _client() as client:
        await client.post("/control", json={"latency_ms": 200, "ready": False})
        started = time.perf_counter()
        slow = await client.get("/v1/audio/voices")
        elapsed = time.perf_counter() - started
        not_ready = await client.get("/ready")
        health = await client.get("/health")
        bad = await client.post("/control", json={"error_rate": 2})
    assert slow.status_code == 200
    assert elapsed >= 0.2
    assert not_ready.status_code == 503
    assert health.status_code == 200  # alive, just not ready
    assert bad.status_code == 422
