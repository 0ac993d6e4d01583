"""GET /v1/queue in the filter: the public view as an immediate response, its cache and errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.domain import default_state
from control_plane.queue_status import QueuePoller
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from gateway.config_client import StaticConfigSource
from gateway.errors import QueueStatusUnavailableError
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.queue_processor import QueueView, public_view
from gateway.ext_proc.router import Endpoint, Router, classify
from gateway.ext_proc.stream import ExtProcService
from gateway.queue_client import HttpQueueStatusSource
from tests.unit.test_queue_status import FakeFetcher, worker_answer
from ttsgw_contract.queue_status import QueueAggregate

TOKEN = "test-token"


def aggregate(**models: dict[str, Any]) -> dict[str, Any]:
    return {"object": "queue.aggregate", "revision": 1, "age_s": 0.2, "models": models}


def model_entry(depth: int = 0, in_flight: int = 0, busy: str = "idle") -> dict[str, Any]:
    return {
        "busy": busy,
        "queued": depth,
        "in_flight": in_flight,
        "drain_rate_per_s": 2.0,
        "levels": {
            lv: {"depth": depth if lv == "default" else 0, "limit": 64, "estimated_wait_s": 0.5}
            for lv in ("high", "default", "low")
        },
        "endpoints": {"total": 1, "reachable": 1},
        "backends": [{"name": "b", "weight": 100, "endpoints": [{"address": "10.0.0.7:8102"}]}],
    }


class CountingControlPlane:
    """A MockTransport handler standing in for the admin API; counts the requests it gets."""

    def __init__(self, body: dict[str, Any] | None = None, status: int = 200) -> None:
        self.body = body if body is not None else aggregate(espeak=model_entry())
        self.status = status
        self.calls = 0
        self.delay_s = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.url.path == "/api/v1/queue"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return httpx.Response(self.status, json=self.body)


def source_for(handler: Any, **kwargs: Any) -> HttpQueueStatusSource:
    return HttpQueueStatusSource(
        "http://cp", token=TOKEN, transport=httpx.MockTransport(handler), **kwargs
    )


def headers_request(path: str, method: str = "GET") -> ProcessingRequest:
    pairs = {":method": method, ":path": path, ":authority": "gw", "x-request-id": "rid-1"}
    return ProcessingRequest(
        request_headers=HttpHeaders(
            headers=HeaderMap(
                headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
            ),
            end_of_stream=True,
        )
    )


async def ask(
    source: HttpQueueStatusSource, path: str, config: StaticConfigSource | None = None
) -> ProcessingResponse:
    """One GET through the real stream loop and processors, as Envoy would send it."""
    config = config or StaticConfigSource.of_models("espeak", "cosyvoice3")
    router = Router(queue_view=QueueView(source))
    service = ExtProcService(config, router.select, FilterMetrics(CollectorRegistry(), config))

    async def messages():
        yield headers_request(path)

    out = [r async for r in service.Process(messages(), None)]
    assert len(out) == 1
    return out[0]


def answer(response: ProcessingResponse) -> tuple[int, dict[str, str], dict[str, Any]]:
    immediate = response.immediate_response
    assert response.HasField("immediate_response")
    headers = {h.header.key: h.header.raw_value.decode() for h in immediate.headers.set_headers}
    return immediate.status.code, headers, json.loads(immediate.body)


def test_only_get_v1_queue_is_the_queue_endpoint() -> None:
    assert classify("GET", "/v1/queue") is Endpoint.QUEUE
    assert classify("POST", "/v1/queue") is Endpoint.OTHER
    assert classify("GET", "/v1/queues") is Endpoint.OTHER


def test_public_view_drops_backends_and_addresses() -> None:
    view = public_view(
        QueueAggregate.model_validate(
            aggregate(cosyvoice3=model_entry(depth=3, in_flight=2, busy="busy"))
        )
    )
    assert view == {
        "object": "queue",
        "age_s": 0.2,
        "models": {
            "cosyvoice3": {
                "busy": "busy",
                "queued": 3,
                "in_flight": 2,
                "levels": {
                    "high": {"depth": 0, "estimated_wait_s": 0.5},
                    "default": {"depth": 3, "estimated_wait_s": 0.5},
                    "low": {"depth": 0, "estimated_wait_s": 0.5},
                },
            }
        },
    }
    assert "10.0.0.7" not in json.dumps(view)


async def test_filter_answers_from_the_real_admin_endpoint() -> None:
    cp = ControlPlane(InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions())
    await cp.start(default_state())
    fetcher = FakeFetcher(
        {
            "127.0.0.1:8101": worker_answer(),
            "127.0.0.1:8102": worker_answer(default=2, in_flight=3, rate=4.0),
        }
    )
    poller = QueuePoller(lambda: cp.head.state, fetcher)
    await poller.poll_once()
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry(), queue_poller=poller)
    source = HttpQueueStatusSource(
        "http://admin", token=TOKEN, transport=httpx.ASGITransport(app=app)
    )
    try:
        status, headers, body = answer(await ask(source, "/v1/queue"))
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["x-request-id"] == "rid-1"
        assert set(body["models"]) == {"espeak", "cosyvoice3"}
        cv = body["models"]["cosyvoice3"]
        assert cv["in_flight"] == 3 and cv["busy"] == "busy"
        assert cv["levels"]["default"] == {"depth": 2, "estimated_wait_s": 0.5}
        assert body["models"]["espeak"]["busy"] == "idle"
        assert "127.0.0.1" not in json.dumps(body)

        status, _, body = answer(await ask(source, "/v1/queue?model=espeak"))
        assert status == 200 and list(body["models"]) == ["espeak"]
    finally:
        await source.aclose()


async def test_before_the_first_gateway_config_the_queue_is_still_answered() -> None:
    """The view needs the control plane's aggregate, not the gateway config."""
    source = source_for(CountingControlPlane())
    try:
        status, _, body = answer(await ask(source, "/v1/queue", StaticConfigSource()))
    finally:
        await source.aclose()
    assert status == 200 and list(body["models"]) == ["espeak"]


async def test_unknown_model_is_a_404_in_openais_shape() -> None:
    source = source_for(CountingControlPlane())
    try:
        status, _, body = answer(await ask(source, "/v1/queue?model=nope"))
    finally:
        await source.aclose()
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["param"] == "model"
    assert "Known models: espeak" in body["error"]["message"]


@pytest.mark.parametrize(
    ("handler_status", "reason"),
    [(503, "answered HTTP 503"), (None, "did not answer")],
)
async def test_control_plane_unavailable_is_a_503(handler_status: int | None, reason: str) -> None:
    if handler_status is None:

        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)
    else:
        handler = CountingControlPlane({"error": "x"}, status=handler_status)
    source = source_for(handler)
    try:
        status, headers, body = answer(await ask(source, "/v1/queue"))
    finally:
        await source.aclose()
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "queue_status_unavailable"
    assert body["error"]["type"] == "server_error"
    assert reason in body["error"]["message"]


async def test_a_flood_costs_one_control_plane_request_per_ttl() -> None:
    control_plane = CountingControlPlane()
    control_plane.delay_s = 0.05
    now = [0.0]
    source = source_for(control_plane, ttl_s=1.0, clock=lambda: now[0])
    try:
        # Concurrent callers share the one request in flight.
        results = await asyncio.gather(*(source.aggregate() for _ in range(50)))
        assert control_plane.calls == 1 and all(r == results[0] for r in results)
        now[0] = 0.9
        await source.aggregate()
        assert control_plane.calls == 1
        now[0] = 1.1
        await source.aggregate()
        assert control_plane.calls == 2
    finally:
        await source.aclose()


async def test_a_failure_is_cached_too_then_retried() -> None:
    control_plane = CountingControlPlane(status=500)
    now = [0.0]
    source = source_for(control_plane, clock=lambda: now[0])
    try:
        for _ in range(3):
            with pytest.raises(QueueStatusUnavailableError):
                await source.aggregate()
        assert control_plane.calls == 1
        control_plane.status = 200
        now[0] = 1.5
        assert "espeak" in (await source.aggregate()).models
        assert control_plane.calls == 2
    finally:
        await source.aclose()


async def test_a_slow_control_plane_fails_fast() -> None:
    control_plane = CountingControlPlane()
    control_plane.delay_s = 2.0
    source = source_for(control_plane, timeout_s=0.1)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(QueueStatusUnavailableError, match="timed out"):
            await source.aggregate()
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await source.aclose()


async def test_without_a_queue_view_the_request_passes_through() -> None:
    config = StaticConfigSource.of_models("espeak")
    service = ExtProcService(config, Router().select, FilterMetrics(CollectorRegistry(), config))

    async def messages():
        yield headers_request("/v1/queue")

    out = [r async for r in service.Process(messages(), None)]
    assert out[0].HasField("request_headers")
