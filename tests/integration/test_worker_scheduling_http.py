"""The scheduler over real HTTP: 429 + Retry-After, /v1/queue, live PCM, client disconnects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.gated_engine import GatedEngine
from tts_backends.engines.synthetic import SyntheticEngine
from tts_backends.server import WorkerServer, create_server
from tts_backends.settings import WorkerSettings

SPEECH = "/v1/audio/speech"


def settings(**kw: object) -> WorkerSettings:
    return WorkerSettings(kind="cosyvoice3", port=0, log_level="warning", **kw)  # type: ignore[arg-type]


@pytest.fixture
async def gated() -> AsyncIterator[tuple[GatedEngine, httpx.AsyncClient]]:
    engine = GatedEngine()
    server: WorkerServer
    server, _ = create_server(engine, settings(queue_limit_low=1, warmup=False))
    async with server.running(), httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        yield engine, c


def body(text: str, **kw: object) -> dict[str, object]:
    return {"model": "m", "input": text, "voice": "gate", "response_format": "pcm", **kw}


async def test_overload_answers_429_with_retry_after_and_queue_shows_it(gated) -> None:
    engine, client = gated
    busy = asyncio.create_task(client.post(SPEECH, json=body("busy")))
    queued = asyncio.create_task(
        client.post(SPEECH, json=body("queued"), headers={"x-tts-priority": "low"})
    )
    while "busy" not in engine.started:
        await asyncio.sleep(0.01)
    status = {}
    for _ in range(100):
        status = (await client.get("/v1/queue")).json()
        if status["levels"]["low"]["depth"] == 1:
            break
        await asyncio.sleep(0.01)
    assert status["in_flight"] == 1 and status["levels"]["low"]["limit"] == 1
    assert status["batching"] is False and status["concurrency"] == 1
    shed = await client.post(SPEECH, json=body("shed"), headers={"x-tts-priority": "low"})
    assert shed.status_code == 429
    assert int(shed.headers["retry-after"]) >= 1
    error = shed.json()["error"]
    assert error["code"] == "queue_full" and "low queue is full" in error["message"]
    engine.release("busy")
    engine.release("queued")
    assert (await busy).status_code == 200 and (await queued).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'tts_worker_shed_total{engine="gated",level="low",reason="queue_full"} 1.0' in metrics


async def test_a_client_that_disconnects_frees_its_place(gated) -> None:
    engine, client = gated
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=10) as other:
        leaving = asyncio.create_task(other.post(SPEECH, json=body("left")))
        while "left" not in engine.started:
            await asyncio.sleep(0.01)
    # The other client is closed: its connection dropped while the engine worked on it.
    with pytest.raises(httpx.HTTPError):
        await leaving
    for _ in range(200):
        if engine.cancelled == ["left"]:
            break
        await asyncio.sleep(0.01)
    assert engine.cancelled == ["left"]
    engine.release("next")
    assert (await client.post(SPEECH, json=body("next"))).status_code == 200


@pytest.fixture
async def synthetic() -> AsyncIterator[httpx.AsyncClient]:
    server: WorkerServer
    server, _ = create_server(SyntheticEngine(), settings())
    async with server.running(), httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


async def test_pcm_streams_before_synthesis_ends(synthetic: httpx.AsyncClient) -> None:
    text = "Streaming for real means the first second arrives early. " * 6
    whole = await synthetic.post(SPEECH, json=body(text, voice="alloy"))
    started = time.perf_counter()
    arrivals = []
    async with synthetic.stream("POST", SPEECH, json=body(text, voice="alloy")) as resp:
        assert resp.status_code == 200
        async for piece in resp.aiter_raw():
            arrivals.append((time.perf_counter() - started, len(piece)))
    total = sum(n for _, n in arrivals)
    assert total == len(whole.content)
    # The first second of audio (48 KB) arrived well before the end of the stream.
    first_at = next(t for t, _ in arrivals)
    assert first_at < 0.5 * arrivals[-1][0]
    status = (await synthetic.get("/v1/queue")).json()
    assert status["batching"] is True and status["max_batch_size"] == 16
    assert status["drain_rate_per_s"] > 0


async def test_sse_pcm_deltas_concatenate_to_the_whole_file(synthetic) -> None:
    import base64
    import json

    text = "Server-sent events, delta by delta. " * 4
    whole = await synthetic.post(SPEECH, json=body(text, voice="alloy"))
    resp = await synthetic.post(SPEECH, json=body(text, voice="alloy", stream_format="sse"))
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == whole.content
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] == len(text)


async def test_each_request_logs_one_line_with_its_request_id(caplog) -> None:
    import logging

    from tts_backends.tracing import TraceLogFilter, TracingMiddleware

    engine = GatedEngine(auto=True)
    server: WorkerServer
    server, _ = create_server(engine, settings(warmup=False))
    server.app.add_middleware(TracingMiddleware)
    caplog.handler.addFilter(TraceLogFilter())
    with caplog.at_level(logging.INFO, logger="tts_backends"):
        async with server.running(), httpx.AsyncClient(base_url=server.url) as client:
            ok = await client.post(SPEECH, json=body("fine"), headers={"x-request-id": "rid-1"})
            bad = await client.post(
                SPEECH, json=body("x" * 5000), headers={"x-request-id": "rid-2"}
            )
    assert ok.status_code == 200 and bad.status_code == 413
    lines = {
        r.request_id: r.getMessage() for r in caplog.records if r.getMessage().startswith("speech")
    }  # type: ignore[attr-defined]
    assert lines["rid-1"].startswith("speech ok: model=m level=default chars=4")
    assert lines["rid-2"].startswith("speech 413 input_too_long")
    assert bad.json()["error"]["request_id"] == "rid-2"
    assert all("fine" not in line for line in lines.values())  # never the text
