"""A real synthetic (CosyVoice3-shaped) worker over real HTTP: determinism and length."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tts_backends.engines.synthetic import SyntheticEngine
from tts_backends.server import WorkerServer, create_server
from tts_backends.settings import WorkerSettings

SPEECH = "/v1/audio/speech"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = WorkerSettings(kind="cosyvoice3", port=0, log_level="warning")
    server: WorkerServer
    server, _ = create_server(SyntheticEngine(device="cpu"), settings)
    async with server.running(), httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


async def speak(client: httpx.AsyncClient, **kw: object) -> bytes:
    body = {"model": "cosyvoice3", "response_format": "pcm", **kw}
    resp = await client.post(SPEECH, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tts-engine"] == "synthetic"
    return resp.content


async def test_same_request_same_bytes_and_length_follows_text(client) -> None:
    a = await speak(client, input="Hello there, general.", voice="alloy")
    b = await speak(client, input="Hello there, general.", voice="alloy")
    assert a == b
    # 21 characters * 0.08 s * 24 kHz * 2 bytes.
    assert len(a) == 42 * 960 * 2
    longer = await speak(client, input="Hello there, general." * 3, voice="alloy")
    assert len(longer) == 3 * len(a)
    faster = await speak(client, input="Hello there, general.", voice="alloy", speed=2.0)
    assert len(faster) == len(a) // 2


async def test_voices_and_readiness(client) -> None:
    voices = (await client.get("/v1/audio/voices")).json()
    assert [v["id"] for v in voices["voices"]][:2] == ["synthetic-1", "synthetic-2"]
    assert voices["openai_aliases"]["cedar"].startswith("synthetic-")
    assert (await client.get("/ready")).json()["status"] == "ready"
    assert await speak(client, input="x", voice="synthetic-3")
