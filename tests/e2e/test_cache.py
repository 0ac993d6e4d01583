"""The response cache for real: Envoy, the filter, Redis, the workers and the openai SDK."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from tests.e2e import test_gateway as gw
from tests.e2e.stack import Stack
from tests.redis_server import RedisServer
from ttsgw import components

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SHORT_TIMER_MS = 500


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> AsyncIterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("cache-stack")))
    # Our own Redis instead of the embedded one, so the tests can stop and kill it.
    stack.settings = stack.settings.model_copy(update={"redis_url": redis.url})
    try:
        stack.settings.state_dir.mkdir(parents=True, exist_ok=True)
        # A short message timer, so a synthesis of about a second outlasts it and the
        # follower test below proves the filter extends it.
        cp = components.control_plane(stack.settings)
        short = {**cp.env, "TTSGW_EXT_PROC_MESSAGE_TIMEOUT_MS": str(SHORT_TIMER_MS)}
        await stack._start("control-plane", dataclasses.replace(cp, env=short))
        await stack.start_ext_proc()
        await stack.start_workers()
        await stack.start_envoy()
        await stack.wait_converged()
        await gw.wait_routable(stack, "espeak")
    except BaseException:
        print(stack.logs())
        await stack.stop()
        raise
    yield stack
    await stack.stop()


async def worker_syntheses(stack: Stack, port: int) -> float:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tts_worker_requests_total{") and 'outcome="ok"' in line
    )


async def speak(client: httpx.AsyncClient, text: str, model: str = "espeak") -> httpx.Response:
    return await client.post(
        "/v1/audio/speech", json={"model": model, "input": text, "voice": "alloy"}
    )


def gateway_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.gateway, timeout=30, trust_env=False)


async def test_miss_then_hit_with_identical_audio_through_the_sdk(stack: Stack) -> None:
    sdk = openai.AsyncOpenAI(base_url=stack.gateway + "/v1", api_key="unused", max_retries=0)
    port = stack.settings.espeak_port
    before = await worker_syntheses(stack, port)
    try:
        answers = []
        for _ in range(3):
            raw = await sdk.audio.speech.with_raw_response.create(
                model="espeak", voice="alloy", input="Cache me if you can.", response_format="wav"
            )
            answers.append((raw.headers["x-tts-cache"], raw.headers["x-tts-backend"], raw.content))
            assert raw.headers["x-request-id"]
    finally:
        await sdk.close()
    assert [a[0] for a in answers] == ["miss", "hit", "hit"]
    assert {a[1] for a in answers} == {"espeak"}
    assert answers[0][2][:4] == b"RIFF" and len(answers[0][2]) > 10_000
    assert answers[1][2] == answers[0][2] == answers[2][2]
    assert await worker_syntheses(stack, port) - before == 1


async def test_sixteen_identical_requests_make_one_synthesis(stack: Stack) -> None:
    port = stack.settings.espeak_port
    before = await worker_syntheses(stack, port)
    async with gateway_client(stack) as client:
        answers = await asyncio.gather(*(speak(client, "sixteen at once") for _ in range(16)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    outcomes = sorted(r.headers["x-tts-cache"] for r in answers)
    assert outcomes == ["hit"] * 15 + ["miss"], outcomes
    assert await worker_syntheses(stack, port) - before == 1


async def test_followers_wait_for_a_synthesis_slower_than_envoys_message_timeout(
    stack: Stack,
) -> None:
    """Envoy drops filter answers after this module's 500 ms timer unless the filter extends it."""
    port = stack.settings.cosyvoice3_port
    text = "A longer passage, so that the synthetic engine takes well over half a second. " * 14
    async with gateway_client(stack) as client:
        started = time.perf_counter()
        solo = await speak(client, text + "(warm-up)", "cosyvoice3")
        alone_s = time.perf_counter() - started
        assert solo.status_code == 200
        before = await worker_syntheses(stack, port)
        answers = await asyncio.gather(*(speak(client, text, "cosyvoice3") for _ in range(8)))
    assert alone_s > 0.5, f"synthesis took only {alone_s:.2f}s; the test needs > 0.5 s"
    assert {r.status_code for r in answers} == {200}
    assert sorted(r.headers["x-tts-cache"] for r in answers) == ["hit"] * 7 + ["miss"]
    assert len({r.content for r in answers}) == 1
    assert await worker_syntheses(stack, port) - before == 1


async def test_a_split_model_never_serves_from_the_cache(stack: Stack) -> None:
    await gw.set_splits(stack, "abmix", espeak=50, cosyvoice3=50)
    await gw.wait_routable(stack, "abmix")
    async with gateway_client(stack) as client:
        answers = [await speak(client, "same words, two variants", "abmix") for _ in range(12)]
    assert {r.status_code for r in answers} == {200}
    assert {r.headers["x-tts-cache"] for r in answers} == {"bypass"}
    assert {r.headers["x-tts-backend"] for r in answers} == {"espeak", "cosyvoice3"}


BAD = [
    (b'{"model": "espeak"', 400, None),
    ({"input": "x"}, 400, "model"),
    ({"model": "nope", "input": "x"}, 404, "model"),
    ({"model": "espeak", "input": ""}, 400, "input"),
    ({"model": "espeak", "input": "x" * 5000}, 413, "input"),
    ({"model": "espeak", "input": "x", "response_format": "aac"}, 400, "response_format"),
    ({"model": "espeak", "input": "x", "speed": 9}, 400, "speed"),
    ({"model": "espeak", "input": "x", "speed": "fast"}, 400, "speed"),
    ({"model": "espeak", "input": "x", "stream_format": "ws"}, 400, "stream_format"),
    ({"model": "espeak", "input": "x", "prompt_audio": "%%%"}, 400, "prompt_audio"),
    (
        {"model": "espeak", "input": "x", "prompt_audio": base64.b64encode(b"nope").decode()},
        400,
        "prompt_audio",
    ),
    ({"model": "espeak", "input": "x", "prompt_text": "t"}, 400, "prompt_text"),
    ({"model": "espeak", "input": "x", "instructions": ["loud"]}, 400, "instructions"),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD)
async def test_bad_inputs_get_openai_shaped_4xx_through_envoy(
    stack: Stack, body: object, status: int, param: str | None
) -> None:
    async with gateway_client(stack) as client:
        if isinstance(body, bytes):
            r = await client.post(
                "/v1/audio/speech", content=body, headers={"content-type": "application/json"}
            )
        else:
            r = await client.post("/v1/audio/speech", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "x-tts-backend" not in r.headers


async def _timed_traffic(stack: Stack, label: str, seconds: float) -> list[tuple[int, str, float]]:
    """Four clients sending distinct texts for ``seconds``: (status, x-tts-cache, latency)."""
    results: list[tuple[int, str, float]] = []
    deadline = time.monotonic() + seconds

    async def client_loop(n: int) -> None:
        async with gateway_client(stack) as client:
            i = 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                r = await speak(client, f"{label} {n} {i}")
                results.append(
                    (r.status_code, r.headers.get("x-tts-cache", ""), time.monotonic() - started)
                )
                i += 1

    await asyncio.gather(*(client_loop(n) for n in range(4)))
    return results


async def test_redis_stopped_then_killed_under_traffic_is_a_bypass(
    stack: Stack, redis: RedisServer
) -> None:
    baseline = await _timed_traffic(stack, "baseline", 2.0)
    assert {s for s, _, _ in baseline} == {200}
    assert {c for _, c, _ in baseline} == {"miss"}
    slowest = max(t for _, _, t in baseline)
    redis.pause()
    try:
        stopped = await _timed_traffic(stack, "stopped", 3.0)
    finally:
        redis.kill()  # SIGKILL works on the stopped process too
    killed = await _timed_traffic(stack, "killed", 2.0)
    for phase in (stopped, killed):
        assert len(phase) >= 8
        assert {s for s, _, _ in phase} == {200}
        assert {c for _, c, _ in phase} == {"bypass"}
    # One Redis call costs at most op + connect timeout (0.25 s); then the breaker skips it.
    worst = max(t for _, _, t in stopped + killed)
    assert worst <= slowest + 0.5, (worst, slowest)
    redis.start()


async def test_admin_sees_cache_stats_and_a_purge_forces_a_miss(stack: Stack) -> None:
    text = "Purge me, then ask again."
    async with gateway_client(stack) as client:
        for attempt in range(50):  # a test before may have left Redis's circuit open
            probe = await speak(client, f"is the cache back? {attempt}")
            if probe.headers["x-tts-cache"] != "bypass":
                break
            await asyncio.sleep(0.1)
        first = await speak(client, text)
        second = await speak(client, text)
        assert [first.headers["x-tts-cache"], second.headers["x-tts-cache"]] == ["miss", "hit"]
        async with stack.admin_client() as admin:
            for _ in range(50):  # the filter records outcomes in the background
                espeak = (await admin.get("/api/v1/cache")).json()["models"].get("espeak", {})
                if espeak.get("hits", 0) >= 1 and espeak.get("misses", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            assert espeak["hits"] >= 1 and espeak["misses"] >= 1
            assert espeak["bytes_served"] >= len(second.content)
            purged = (await admin.delete("/api/v1/cache", params={"model": "espeak"})).json()
            assert purged["purged"] >= 1
        third = await speak(client, text)
    assert third.headers["x-tts-cache"] == "miss"
    assert third.content == first.content
