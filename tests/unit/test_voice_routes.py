"""The /v1/voices API over real HTTP: a worker app (create_app) with the voice router added."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.fakes.fake_engine import FakeToneEngine
from tests.fakes.fake_voice_registry import InMemoryVoiceRegistry
from tests.redis_server import RedisServer
from tts_backends.errors import VoiceRegistryUnavailableError
from tts_backends.server import WorkerServer, create_server
from tts_backends.settings import WorkerSettings
from tts_backends.voice_registry import RedisVoiceRegistry, VoiceRegistry

VOICES = "/v1/voices"


def clip_b64(rate: int = 16_000, seconds: float = 2.0) -> str:
    buf = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def serve(registry: VoiceRegistry | None) -> WorkerServer:
    settings = WorkerSettings(port=0, log_level="warning")
    server, _ = create_server(FakeToneEngine(), settings, voice_registry=registry)
    return server


@pytest.fixture
def registry() -> InMemoryVoiceRegistry:
    return InMemoryVoiceRegistry()


@pytest.fixture
async def client(registry: InMemoryVoiceRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(registry).running() as server, httpx.AsyncClient(base_url=server.url) as c:
        yield c


def assert_openai_error(resp: httpx.Response, status: int, param: str | None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    return dict(error)


async def test_create_list_show_delete(client: httpx.AsyncClient, registry) -> None:
    resp = await client.post(
        VOICES, json={"name": "Lin", "prompt_audio": clip_b64(), "prompt_text": "你好。"}
    )
    assert resp.status_code == 201, resp.text
    voice = resp.json()
    assert set(voice) == {"id", "object", "name", "created_at", "duration_s"}
    assert voice["object"] == "voice" and voice["name"] == "Lin" and voice["duration_s"] == 2.0
    assert voice["id"].startswith("voice_")
    assert registry.clips[voice["id"]].prompt_text == "你好。"

    listed = (await client.get(VOICES)).json()
    assert listed == {"object": "list", "data": [voice]}
    assert (await client.get(f"{VOICES}/{voice['id']}")).json() == voice

    resp = await client.delete(f"{VOICES}/{voice['id']}")
    assert resp.status_code == 200
    assert resp.json() == {"id": voice["id"], "object": "voice.deleted", "deleted": True}
    assert (await client.get(VOICES)).json()["data"] == []


async def test_unknown_ids_are_openai_404s(client: httpx.AsyncClient) -> None:
    for resp in (
        await client.get(f"{VOICES}/voice_000000000000"),
        await client.delete(f"{VOICES}/voice_000000000000"),
    ):
        error = assert_openai_error(resp, 404, "voice_id")
        assert error["code"] == "voice_not_found" and "voice_000000000000" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt_audio": clip_b64(8_000), "prompt_text": "hi"}, "prompt_audio"),
        ({"prompt_audio": clip_b64(16_000, 31.0), "prompt_text": "hi"}, "prompt_audio"),
        ({"prompt_audio": "not base64!", "prompt_text": "hi"}, "prompt_audio"),
        ({"prompt_audio": clip_b64(), "prompt_text": "  "}, "prompt_text"),
        ({"prompt_audio": clip_b64()}, "prompt_text"),
        ({"prompt_text": "hi"}, "prompt_audio"),
        ({"prompt_audio": clip_b64(), "prompt_text": "hi", "name": "n" * 500}, "name"),
    ],
)
async def test_bad_voices_are_400_naming_the_field(
    client: httpx.AsyncClient, registry, body: dict, param: str
) -> None:
    error = assert_openai_error(await client.post(VOICES, json=body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert registry.records == {}


async def test_without_a_registry_every_route_is_503_naming_the_setting() -> None:
    async with serve(None).running() as server, httpx.AsyncClient(base_url=server.url) as c:
        body = {"prompt_audio": clip_b64(), "prompt_text": "hi"}
        for resp in (
            await c.post(VOICES, json=body),
            await c.get(VOICES),
            await c.get(f"{VOICES}/voice_000000000000"),
            await c.delete(f"{VOICES}/voice_000000000000"),
        ):
            error = assert_openai_error(resp, 503, None)
            assert error["code"] == "voice_registry_unavailable"
            assert "TTSGW_WORKER_REDIS_URL" in error["message"]


async def test_a_failing_registry_is_503(client: httpx.AsyncClient, registry) -> None:
    registry.fail_with = VoiceRegistryUnavailableError("the voice registry (Redis) failed")
    error = assert_openai_error(await client.get(VOICES), 503, None)
    assert error["type"] == "service_unavailable"


async def test_two_replicas_share_one_redis_registry() -> None:
    with RedisServer() as redis_server:
        regs = [RedisVoiceRegistry(redis_server.url) for _ in range(2)]
        a, b = serve(regs[0]), serve(regs[1])
        async with a.running(), b.running(), httpx.AsyncClient() as http:
            created = await http.post(
                a.url + VOICES, json={"prompt_audio": clip_b64(), "prompt_text": "shared"}
            )
            assert created.status_code == 201, created.text
            voice_id = created.json()["id"]
            assert (await http.get(f"{b.url}{VOICES}/{voice_id}")).json() == created.json()
            assert (await http.delete(f"{b.url}{VOICES}/{voice_id}")).status_code == 200
            assert (await http.get(f"{a.url}{VOICES}/{voice_id}")).status_code == 404
        for reg in regs:
            await reg.aclose()
