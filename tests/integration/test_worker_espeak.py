"""A real espeak-ng worker over real HTTP: the OpenAI SDK, formats, concurrency, the CLI."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tts_backends.engines.espeak import EspeakEngine
from tts_backends.server import WorkerServer, create_server
from tts_backends.settings import WorkerSettings

SPEECH = "/v1/audio/speech"
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
async def worker() -> AsyncIterator[WorkerServer]:
    settings = WorkerSettings(kind="espeak", port=0, log_level="warning")
    server, _ = create_server(EspeakEngine(), settings)
    async with server.running():
        yield server


def decode(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return samples, rate


async def test_openai_sdk_gets_24k_speech(worker: WorkerServer) -> None:
    def call() -> bytes:
        client = openai.OpenAI(base_url=f"{worker.url}/v1", api_key="x", max_retries=0)
        resp = client.audio.speech.create(model="espeak", voice="alloy", input=SENTENCE)
        return resp.content

    data = await asyncio.to_thread(call)
    samples, rate = decode(data)
    assert rate == 24_000 and samples.ndim == 1
    # Nine words at 175 wpm: roughly 2-5 seconds of speech, not silence.
    assert 1.5 < samples.size / rate < 6.0
    assert np.sqrt(np.mean(samples**2)) > 0.01


async def test_speed_maps_to_words_per_minute(worker: WorkerServer) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        durations = {}
        for speed in (1.0, 2.0):
            body = {"model": "espeak", "input": SENTENCE, "speed": speed, "response_format": "pcm"}
            resp = await client.post(SPEECH, json=body)
            assert resp.status_code == 200 and resp.headers["content-type"] == "audio/pcm"
            durations[speed] = len(resp.content) / 2 / 24_000
    assert 0.35 < durations[2.0] / durations[1.0] < 0.7


async def test_own_voice_names_and_leading_dash_text(worker: WorkerServer) -> None:
    async with httpx.AsyncClient(base_url=worker.url) as client:
        voices = (await client.get("/v1/audio/voices")).json()
        ids = {v["id"] for v in voices["voices"]}
        assert {"en-us", "de", "fr-fr", "cmn"} <= ids
        body = {"model": "espeak", "input": "--version -v de hallo", "voice": "de"}
        resp = await client.post(SPEECH, json=body)
        assert resp.status_code == 200, resp.text
        samples, rate = decode(resp.content)
        assert rate == 24_000 and samples.size / rate > 0.5
        bad = await client.post(SPEECH, json={"model": "espeak", "input": "x", "voice": "klingon"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "voice"


async def test_flac_and_every_format_it_offers(worker: WorkerServer) -> None:
    from tts_backends.audio import supported_formats

    async with httpx.AsyncClient(base_url=worker.url) as client:
        for name, fmt in supported_formats().items():
            body = {"model": "espeak", "input": "Hello.", "response_format": name}
            resp = await client.post(SPEECH, json=body)
            assert resp.status_code == 200, (name, resp.text)
            assert resp.headers["content-type"] == fmt.content_type
            assert resp.headers["x-tts-engine"] == "espeak"
            if name != "pcm":
                samples, rate = decode(resp.content)
                assert rate == 24_000 and samples.size > 0


async def test_concurrent_requests_all_succeed(worker: WorkerServer) -> None:
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as client:
        bodies = [{"model": "espeak", "input": f"Request number {i}."} for i in range(12)]
        resps = await asyncio.gather(*(client.post(SPEECH, json=b) for b in bodies))
        assert [r.status_code for r in resps] == [200] * 12
        metrics = (await client.get("/metrics")).text
    assert 'tts_worker_requests_total{engine="espeak",outcome="ok"} 12.0' in metrics


def test_cli_serves_on_port_0_and_stops_on_sigint() -> None:
    env = {**os.environ, "TTSGW_WORKER_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "tts_backends.main", "espeak", "--port", "0"]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stderr is not None
        try:
            line = proc.stderr.readline()
            match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            assert match, line
            url = match.group(1)
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "worker never became ready"
                time.sleep(0.05)
            resp = httpx.post(f"{url}{SPEECH}", json={"model": "espeak", "input": "Hi."})
            assert resp.status_code == 200 and decode(resp.content)[1] == 24_000
        finally:
            proc.send_signal(signal.SIGINT)
            rest = proc.stderr.read()
            rc = proc.wait(timeout=15)
    # Ctrl-C ends the worker with the shell's conventional 130 and no traceback.
    assert rc == 130
    assert "Traceback" not in rest
