"""End to end: any oversized body gets an OpenAI-shaped 4xx from Envoy or the filter, never a 5xx.

Bodies up to MAX_REQUEST_BODY_BYTES cross the ext_proc stream and the filter judges them
(413 input_too_long); past it Envoy's buffer answers, mapped to 413 request_too_large.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from tests.e2e.stack import Stack
from ttsgw_contract.limits import (
    DEFAULT_MAX_INPUT_CHARS,
    DEFAULT_MAX_PROMPT_AUDIO_BYTES,
    MAX_REQUEST_BODY_BYTES,
    max_speech_body_bytes,
)

# The policy is changed below, so the module keeps a stack of its own.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

MB = 1_000_000
SMALL_PROMPT_LIMIT = 256 * 1024
# Envoy's default message timer (DEFAULT_MESSAGE_TIMEOUT_MS) stays: it is sized for a
# body near the transport limit, and the filter parses such a body off its event loop.


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    started = Stack(tmp_path_factory.mktemp("sizes"))
    try:
        await started.start_all()
    except BaseException:
        print(started.logs())
        await started.stop()
        raise
    try:
        yield started
    finally:
        await started.stop()


def speech_body(size: int) -> bytes:
    head = b'{"model":"espeak","input":"'
    tail = b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def wav_near(limit: int, rate: int, channels: int) -> bytes:
    """A valid 16-bit PCM WAV a few KB under ``limit`` bytes."""
    frames = (limit - 4096 - 44) // (2 * channels)
    samples = (0.2 * np.sin(np.arange(frames) * 0.05)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(samples[:, None], channels, axis=1), rate, "PCM_16", format="WAV")
    raw = buf.getvalue()
    assert limit - 8192 < len(raw) <= limit
    return raw


def assert_openai_4xx(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert (error["type"], error["code"]) == ("invalid_request_error", code), error


async def post(client: httpx.AsyncClient, content: bytes) -> httpx.Response:
    return await client.post(
        "/v1/audio/speech", content=content, headers={"content-type": "application/json"}
    )


async def prompt_request(client: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    body = {
        "model": "cosyvoice3",
        "input": "hi",
        "prompt_text": "hi",
        "prompt_audio": base64.b64encode(raw).decode(),
    }
    return await post(client, json.dumps(body).encode())


# The largest body a valid request can have under the default policy (about 14.3 MB).
LARGEST_VALID = max_speech_body_bytes(DEFAULT_MAX_INPUT_CHARS, DEFAULT_MAX_PROMPT_AUDIO_BYTES)


@pytest.mark.parametrize(
    "size",
    [1 * MB, 3 * MB, 5 * MB, 7 * MB, 9 * MB, 12 * MB, 16 * MB, MAX_REQUEST_BODY_BYTES],
)
async def test_every_body_size_gets_the_filters_413(stack: Stack, size: int) -> None:
    # Up to the largest valid body the filter parses it and names the field; past it the
    # filter refuses on the length alone, before parsing.
    code = "input_too_long" if size <= LARGEST_VALID else "request_too_large"
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        assert_openai_4xx(await post(client, speech_body(size)), 413, code)


@pytest.mark.parametrize("size", [MAX_REQUEST_BODY_BYTES + 1, 24 * 1024 * 1024])
async def test_bodies_past_the_buffer_get_envoys_413_as_json(stack: Stack, size: int) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        response = await post(client, speech_body(size))
    assert_openai_4xx(response, 413, "request_too_large")
    assert str(MAX_REQUEST_BODY_BYTES) in response.json()["error"]["message"]


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1024 * 1024):
        yield body[start : start + 1024 * 1024]


@pytest.mark.parametrize("size", [MAX_REQUEST_BODY_BYTES + 1])
async def test_a_chunked_body_past_the_buffer_gets_envoys_413_as_json(
    stack: Stack, size: int
) -> None:
    # Without a Content-Length only Envoy's buffer can stop it; its plain-text 413 is
    # mapped to the OpenAI shape.
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        response = await client.post(
            "/v1/audio/speech",
            content=chunks(speech_body(size)),
            headers={"content-type": "application/json"},
        )
    assert "content-length" not in response.request.headers
    assert_openai_4xx(response, 413, "request_too_large")
    assert str(MAX_REQUEST_BODY_BYTES) in response.json()["error"]["message"]


async def test_a_prompt_under_the_default_limit_passes_the_size_checks(stack: Stack) -> None:
    # 96 kHz stereo keeps a clip of almost 10 MiB under the 30 s duration limit, so the
    # only checks left are the worker's: it answers 200.
    raw = wav_near(DEFAULT_MAX_PROMPT_AUDIO_BYTES, 96_000, 2)
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=120) as client:
        response = await prompt_request(client, raw)
    assert response.status_code == 200, response.text[:300]


async def test_prompt_audio_limit_of_the_policy(stack: Stack) -> None:
    async with stack.admin_client() as admin:
        policy = (await admin.get("/api/v1/gateway-policy")).json()
        changed = {**policy, "max_prompt_audio_bytes": SMALL_PROMPT_LIMIT}
        assert (await admin.put("/api/v1/gateway-policy", json=changed)).status_code == 200
    over = b"\0" * (SMALL_PROMPT_LIMIT + 1024)
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        for _ in range(100):  # until the filter has the new policy
            response = await prompt_request(client, over)
            if response.status_code == 413:
                break
            await asyncio.sleep(0.1)
        assert_openai_4xx(response, 413, "prompt_audio_too_large")
        under = await prompt_request(client, wav_near(SMALL_PROMPT_LIMIT, 16_000, 1))
    assert under.status_code == 200, under.text[:300]
