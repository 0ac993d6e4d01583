"""The whole path for real: admin write -> control plane -> ADS -> Envoy -> filter -> workers."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from collections import Counter

import httpx
import openai
import pytest
import soundfile

from tests.e2e.stack import Stack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def set_splits(stack: Stack, model: str, **weights: int) -> dict[str, object]:
    body = {"splits": [{"backend": b, "weight": w} for b, w in weights.items()]}
    async with stack.admin_client() as admin:
        response = await admin.put(f"/api/v1/models/{model}?wait=acked&timeout_s=10", json=body)
    assert response.status_code == 200, response.text
    result = dict(response.json())
    assert result["acked"] is True, result
    return result


async def backends_seen(stack: Stack, model: str, n: int, concurrency: int = 8) -> Counter[str]:
    """Route n cheap requests through Envoy and count which backend each reached.

    Concurrency stays under the default circuit breaker (10 pending), which would
    otherwise shed the excess with 503 overflow, as it should.
    """
    seen: Counter[str] = Counter()
    queue = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in queue:
            r = await client.get("/v1/audio/voices", params={"model": model})
            assert r.status_code == 200, r.text
            seen[r.headers["x-tts-backend"]] += 1

    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return seen


async def wait_routable(stack: Stack, model: str, timeout: float = 10) -> None:
    """The filter learns new models by long poll; wait until it knows this one."""
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=5) as client:
        for _ in range(int(timeout / 0.1)):
            r = await client.get("/v1/audio/voices", params={"model": model})
            if r.status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"model {model} never became routable")


async def test_openai_sdk_gets_audio_through_the_gateway(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.gateway + "/v1", api_key="not-needed")
    for model in ("espeak", "cosyvoice3"):
        raw = await asyncio.to_thread(
            client.audio.speech.with_raw_response.create,
            model=model,
            voice="alloy",
            input="Hello from the ttsgw gateway.",
            response_format="wav",
        )
        assert raw.headers["x-tts-backend"] == model
        assert raw.headers["x-request-id"]
        audio, rate = soundfile.read(io.BytesIO(raw.content))
        assert rate == 24000
        assert len(audio) / rate > 0.5
    models = await asyncio.to_thread(client.models.list)
    assert {m.id for m in models.data} == {"espeak", "cosyvoice3"}


async def test_unknown_model_is_an_openai_404(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.gateway + "/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        await asyncio.to_thread(
            client.audio.speech.create, model="tts-nope", voice="alloy", input="hi"
        )
    assert err.value.code == "model_not_found"
    assert "tts-nope" in err.value.message


async def test_filter_rejections_are_not_dressed_as_outages(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
        unknown = await client.post("/v1/audio/speech", json={"model": "nope", "input": "hi"})
        broken = await client.post(
            "/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert (unknown.status_code, broken.status_code) == (404, 400)
    for response in (unknown, broken):
        assert response.headers["content-type"] == "application/json"
        assert "x-tts-degraded" not in response.headers
        assert "x-tts-backend" not in response.headers
        assert set(response.json()["error"]) >= {"message", "type", "param", "code"}


async def test_envoy_own_errors_use_the_openai_error_shape(stack: Stack) -> None:
    async with stack.admin_client() as admin:
        r = await admin.put(
            "/api/v1/backends/dead?wait=acked",
            json={"endpoints": [{"host": "127.0.0.1", "port": free_port()}]},
        )
        assert r.status_code == 200, r.text
        r = await admin.put(
            "/api/v1/models/dead?wait=acked", json={"splits": [{"backend": "dead", "weight": 1}]}
        )
        assert r.status_code == 200, r.text
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        for _ in range(100):  # until the filter has learned the model
            response = await client.post("/v1/audio/speech", json={"model": "dead", "input": "x"})
            if response.status_code != 404:
                break
            await asyncio.sleep(0.1)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable" and error["type"] == "server_error"
    assert error["request_id"] == response.headers["x-request-id"]


async def test_admin_write_becomes_an_80_20_split(stack: Stack) -> None:
    await set_splits(stack, "mix", espeak=80, cosyvoice3=20)
    await wait_routable(stack, "mix")
    seen = await backends_seen(stack, "mix", 1000)
    assert sum(seen.values()) == 1000
    assert 760 <= seen["espeak"] <= 840, seen
    assert 160 <= seen["cosyvoice3"] <= 240, seen


async def test_weight_change_is_route_only_and_converges_to_the_ack(stack: Stack) -> None:
    await set_splits(stack, "shift", espeak=100)
    await wait_routable(stack, "shift")
    before = (await stack.fleet())["versions"]
    result = await set_splits(stack, "shift", espeak=0, cosyvoice3=100)
    assert isinstance(result["converged_ms"], float) and result["converged_ms"] < 5000
    fleet = await stack.fleet()
    after = fleet["versions"]
    assert {t for t in after if after[t] != before[t]} == {"rds"}
    assert fleet["nodes"][0]["types"]["rds"]["acked"] == after["rds"]
    seen = await backends_seen(stack, "shift", 50)
    assert seen == Counter({"cosyvoice3": 50})


async def test_invalid_and_dangling_writes_change_nothing(stack: Stack) -> None:
    before = await stack.fleet()
    async with stack.admin_client() as admin:
        attempts = [
            await admin.put(
                "/api/v1/models/espeak/splits",
                json={"splits": [{"backend": "espeak", "weight": -1}]},
            ),
            await admin.put(
                "/api/v1/models/bad", json={"splits": [{"backend": "missing", "weight": 5}]}
            ),
            await admin.delete("/api/v1/backends/espeak"),
            await admin.put(
                "/api/v1/backends/x", content=b"{oops", headers={"content-type": "application/json"}
            ),
            await admin.post("/api/v1/revisions/999/restore"),
        ]
    assert [r.status_code for r in attempts] == [422, 409, 409, 400, 404]
    assert all("error" in r.json() for r in attempts)
    after = await stack.fleet()
    assert after["revision"] == before["revision"]
    assert after["versions"] == before["versions"]


async def test_gateway_keeps_serving_while_the_filter_is_down(stack: Stack) -> None:
    stack.kill("ext-proc")
    try:
        async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
            for _ in range(3):
                r = await client.post(
                    "/v1/audio/speech",
                    json={"model": "espeak", "input": "still here", "voice": "alloy"},
                )
                assert r.status_code == 200, r.text
                assert r.headers["x-tts-degraded"] == "filter-unavailable"
                assert r.content[:4] == b"RIFF"
    finally:
        child = stack.children["ext-proc"]
        await child.start()
        await child.wait_ready(30)


async def test_control_plane_sigkill_under_traffic(stack: Stack) -> None:
    before = await stack.fleet()
    outcomes: Counter[int] = Counter()
    stop = asyncio.Event()

    async def traffic() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
            while not stop.is_set():
                r = await client.post(
                    "/v1/audio/speech",
                    json={"model": "espeak", "input": "resilient", "voice": "alloy"},
                )
                outcomes[r.status_code] += 1

    load = [asyncio.create_task(traffic()) for _ in range(4)]
    await asyncio.sleep(1.0)
    stack.kill("control-plane", signal.SIGKILL)
    await stack.children["control-plane"].process.wait()  # type: ignore[union-attr]
    await asyncio.sleep(2.0)  # the fleet runs on its last config with no control plane
    down_count = sum(outcomes.values())
    await stack.start_control_plane()
    fleet = await stack.wait_converged()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*load)

    assert down_count > 0
    assert set(outcomes) == {200}, outcomes
    assert fleet["revision"] == before["revision"]
    assert fleet["versions"] == before["versions"]
    # And the restarted control plane still drives the fleet.
    await set_splits(stack, "after-restart", espeak=100)


async def test_a_rejected_request_is_in_the_access_log_within_seconds(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
        r = await client.post(
            "/v1/audio/speech",
            json={"model": "espeak", "input": "x" * 5000},
            headers={"x-request-id": "e2e-too-long"},
        )
    assert r.status_code == 413 and r.json()["error"]["request_id"] == "e2e-too-long"
    log = stack.settings.log_dir / "access.log"
    # Envoy flushes its log file every second (--file-flush-interval-msec 1000).
    for _ in range(50):
        lines = [json.loads(x) for x in log.read_text().splitlines() if "e2e-too-long" in x]
        if lines:
            break
        await asyncio.sleep(0.1)
    assert lines and lines[0]["status"] == 413 and lines[0]["path"] == "/v1/audio/speech"
