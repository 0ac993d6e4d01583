"""End to end: one request is one Zipkin trace across Envoy, the filter and the worker.

Real Envoy, filter, relay and a synthetic worker with tracing on (as `ttsgw up` starts them),
reporting through the span relay to a Zipkin-compatible receiver in this test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.e2e.stack import Stack, free_port
from tests.e2e.zipkin_receiver import ZipkinReceiver, running_receiver
from ttsgw import components

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SECRET = "tracing-secret-phrase"
WORKER_STAGES = {
    "queue_wait",
    "text_frontend",
    "generate_tokens",
    "tokens_to_mel",
    "vocoder",
    "encode",
}
FILTER_SPANS = {"validate", "cache_lookup"}
WORKER_SPAN = "POST /v1/audio/speech"


@contextlib.asynccontextmanager
async def traced_stack(state_dir: Path, zipkin_url: str, ratio: float) -> AsyncIterator[Stack]:
    """The stack `ttsgw up` starts with TTSGW_TRACING_ZIPKIN_URL set, the worker traced."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "TTSGW_TRACING_SAMPLE_RATIO": str(ratio),
            "TTSGW_TRACING_SLOW_THRESHOLD_MS": "20000",
            "TTSGW_TRACING_GRACE_S": "0.5",
        }
    )
    stack = Stack(state_dir)
    stack.settings = stack.settings.model_copy(
        update={"tracing_zipkin_url": zipkin_url, "relay_port": free_port()}
    )
    try:
        stack.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await stack._start("span-relay", components.span_relay(stack.settings))
        await stack.start_redis()
        await stack.start_control_plane()
        await stack.start_ext_proc()
        await stack._start("cosyvoice3", components.cosyvoice3_worker(stack.settings))
        await stack.start_envoy()
        await stack.wait_converged()
    except BaseException:
        print(stack.logs())
        await stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        raise
    try:
        yield stack
    finally:
        await stack.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[tuple[ZipkinReceiver, int, Any]]:
    async with running_receiver() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, receiver: tuple[ZipkinReceiver, int, Any]
) -> AsyncIterator[Stack]:
    url = f"http://127.0.0.1:{receiver[1]}/api/v2/spans"
    async with traced_stack(Path(tmp_path_factory.mktemp("traced")), url, 1.0) as started:
        yield started


async def speak(stack: Stack, text: str, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            f"{stack.gateway}/v1/audio/speech",
            json={"model": "cosyvoice3", "input": text, "voice": "alloy", **extra},
        )


async def trace_of(receiver: ZipkinReceiver, request_id: str, timeout: float = 15) -> str:
    """The trace id of the request, from Envoy's root span (tagged with x-request-id)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for span in receiver.spans:
            if span.get("tags", {}).get("request_id") == request_id and "parentId" not in span:
                return str(span["traceId"]).rjust(32, "0")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no root span for request {request_id} among {len(receiver.spans)}")


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


async def access_log_line(stack: Stack, request_id: str) -> dict[str, Any]:
    # Envoy flushes its access log about once a second.
    for _ in range(50):
        for line in (stack.settings.log_dir / "access.log").read_text().splitlines():
            entry = json.loads(line)
            if entry.get("request_id") == request_id:
                return dict(entry)
        await asyncio.sleep(0.1)
    tail = (stack.settings.log_dir / "access.log").read_text()[-1500:]
    raise AssertionError(f"no access log line for {request_id}: {tail}")


@pytest.mark.asyncio(loop_scope="module")
async def test_one_request_is_one_trace_across_envoy_filter_and_worker(
    stack: Stack, receiver: tuple[ZipkinReceiver, int, Any]
) -> None:
    collected = receiver[0]
    response = await speak(stack, f"{SECRET} {uuid.uuid4().hex}")
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    trace_id = await trace_of(collected, request_id)
    spans = await collected.wait_for(trace_id, FILTER_SPANS | {WORKER_SPAN} | WORKER_STAGES)
    ids = {s["id"] for s in spans}
    (root,) = [s for s in spans if "parentId" not in s]
    # Every span hangs off another span of the same trace: one tree, no orphans.
    assert all(s["parentId"] in ids for s in spans if s is not root)
    assert len(ids) == len(spans)

    envoy = [s for s in spans if s["localEndpoint"]["serviceName"] == "ttsgw"]
    ext_proc_client = next(s for s in envoy if "ExternalProcessor" in s["name"])
    upstream = next(s for s in envoy if s["name"].startswith("router cosyvoice3"))
    assert root["kind"] == "SERVER" and root["tags"]["http.status_code"] == "200"
    assert root["tags"]["tts.model"] == "cosyvoice3"
    assert ext_proc_client["parentId"] == root["id"]
    assert upstream["parentId"] == root["id"] and upstream["kind"] == "CLIENT"

    named = by_name(spans)
    # The filter's steps are children of Envoy's ext_proc call: B3 rides the gRPC metadata.
    # A phase that went well has no span of its own (docs/tracing.md).
    assert not any(s["name"].startswith("ext_proc ") for s in spans)
    for step in FILTER_SPANS:
        assert named[step]["parentId"] == ext_proc_client["id"]
        assert named[step]["localEndpoint"]["serviceName"] == "ttsgw-gateway-filter"
    lookup = named["cache_lookup"]
    assert lookup["tags"]["tts.model"] == "cosyvoice3"
    assert lookup["tags"]["tts.cache"] == "miss"
    assert int(lookup["tags"]["tts.text_length"]) == len(SECRET) + 33
    assert int(named["validate"]["tags"]["tts.text_length"]) == len(SECRET) + 33

    worker = next(
        s for s in spans if s["name"] == WORKER_SPAN and s["tags"].get("request_id") == request_id
    )
    assert worker["parentId"] == upstream["id"]
    assert worker["tags"]["http.status_code"] == "200"
    # Every stage of the synthetic engine is a descendant of the worker's span.
    parents = {s["id"]: s.get("parentId") for s in spans}

    def under_worker(span: dict[str, Any]) -> bool:
        node = span.get("parentId")
        while node is not None:
            if node == worker["id"]:
                return True
            node = parents.get(node)
        return False

    stages = {s["name"] for s in spans if under_worker(s)}
    assert stages >= WORKER_STAGES, stages

    logged = await access_log_line(stack, request_id)
    assert logged["trace_id"].rjust(32, "0") == trace_id


@pytest.mark.asyncio(loop_scope="module")
async def test_no_span_contains_input_text_or_api_key(
    stack: Stack, receiver: tuple[ZipkinReceiver, int, Any]
) -> None:
    collected = receiver[0]
    key = "sk-tracing-" + uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{stack.gateway}/v1/audio/speech",
            json={"model": "cosyvoice3", "input": f"{SECRET} {uuid.uuid4().hex}", "voice": "alloy"},
            headers={"authorization": f"Bearer {key}"},
        )
    assert response.status_code == 200
    trace_id = await trace_of(collected, response.headers["x-request-id"])
    await collected.wait_for(trace_id, FILTER_SPANS | {WORKER_SPAN})
    dumped = json.dumps(collected.spans)
    assert len(collected.spans) > 20
    assert SECRET not in dumped
    assert key not in dumped
    assert "RIFF" not in dumped  # no WAV bytes either


async def metric(url: str, name: str, label: str = "") -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url)).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.asyncio(loop_scope="module")
async def test_error_is_kept_at_zero_ratio_and_ok_is_dropped(tmp_path: Path) -> None:
    async with running_receiver() as (collected, port, _):
        url = f"http://127.0.0.1:{port}/api/v2/spans"
        async with traced_stack(tmp_path / "zero", url, 0.0) as zero:
            ok = await speak(zero, f"{SECRET} {uuid.uuid4().hex}")
            too_long = await speak(zero, "x" * 5000)
            assert ok.status_code == 200
            assert too_long.status_code == 413
            error = too_long.json()["error"]
            assert error["code"] == "input_too_long"
            assert error["request_id"] == too_long.headers["x-request-id"]

            trace_id = await trace_of(collected, too_long.headers["x-request-id"])
            assert error["trace_id"] == trace_id
            spans = await collected.wait_for(trace_id, {"ext_proc request_body"})
            body_span = by_name(spans)["ext_proc request_body"]
            assert body_span["tags"]["error"] == "input_too_long"
            assert body_span["tags"]["http.status_code"] == "413"
            assert any("input_too_long" in a["value"] for a in body_span.get("annotations", []))
            root = next(s for s in spans if "parentId" not in s)
            assert body_span["parentId"] in {s["id"] for s in spans}
            assert root["tags"]["http.status_code"] == "413"

            # The ordinary request was decided and dropped: counted by the relay, not sent.
            relay_metrics = f"http://127.0.0.1:{zero.settings.relay_port}/metrics"
            deadline = asyncio.get_running_loop().time() + 10
            while await metric(relay_metrics, "ttsgw_relay_traces_total", "dropped") < 1:
                assert asyncio.get_running_loop().time() < deadline, "no trace dropped"
                await asyncio.sleep(0.2)
            ok_id = ok.headers["x-request-id"]
            assert not [s for s in collected.spans if s.get("tags", {}).get("request_id") == ok_id]


@pytest.mark.asyncio(loop_scope="module")
async def test_collector_down_leaves_requests_unaffected(
    stack: Stack, receiver: tuple[ZipkinReceiver, int, Any]
) -> None:
    """Last in the module: it stops the receiver, then kills the relay."""
    _, _, server = receiver
    server.should_exit = True
    await asyncio.sleep(0.5)
    response = await speak(stack, f"{SECRET} {uuid.uuid4().hex}")
    assert response.status_code == 200
    relay_metrics = f"http://127.0.0.1:{stack.settings.relay_port}/metrics"
    deadline = asyncio.get_running_loop().time() + 15
    while await metric(relay_metrics, "ttsgw_relay_spans_dropped_total", "forward_failed") < 1:
        assert asyncio.get_running_loop().time() < deadline, "relay never counted a failed forward"
        await asyncio.sleep(0.2)

    stack.kill("span-relay", signal.SIGKILL)
    filter_metrics = f"http://127.0.0.1:{stack.settings.ext_proc_metrics_port}/metrics"
    before = await metric(filter_metrics, "ttsgw_tracing_spans_dropped_total", "export_failed")
    for _ in range(5):
        response = await speak(stack, f"{SECRET} {uuid.uuid4().hex}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
    deadline = asyncio.get_running_loop().time() + 15
    while (
        await metric(filter_metrics, "ttsgw_tracing_spans_dropped_total", "export_failed") <= before
    ):
        assert asyncio.get_running_loop().time() < deadline, "the filter never counted a drop"
        await asyncio.sleep(0.2)
