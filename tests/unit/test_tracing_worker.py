"""The worker's TracingMiddleware and the emitter: B3 parent, errors, rescue, bounded export."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from tts_backends.tracing import TraceLogFilter, TracingMiddleware, setup_worker_tracing
from ttsgw_common.telemetry.emitter import Telemetry, setup_tracing
from ttsgw_common.telemetry.log_context import ids

TRACE_IN = "0" * 16 + "0000000000000001"  # in any ratio > 0
TRACE_OUT = "0" * 16 + "ffffffffffffffff"  # in no ratio < 1
PARENT = "00f067aa0ba902b7"


class Collect(SpanExporter):
    def __init__(self, fail: bool = False) -> None:
        self.spans: list[ReadableSpan] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.gate.wait(5)
        if self.fail:
            raise ConnectionError("collector down")
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def telemetry(exporter: SpanExporter, ratio: float = 0.5, max_queue_size: int = 2048) -> Telemetry:
    return setup_tracing(
        "test-worker",
        "http://unused",
        sample_ratio=ratio,
        slow_threshold_s=10.0,
        exporter=exporter,
        max_queue_size=max_queue_size,
    )


def app(tel: Telemetry | None, seen: list[dict[str, str]]) -> FastAPI:
    api = FastAPI()

    @api.post("/v1/audio/speech")
    async def speech(body: dict) -> JSONResponse:
        seen.append(ids())
        if len(body.get("input", "")) > 5:
            return JSONResponse(
                {
                    "error": {
                        "message": "too long",
                        "type": "x",
                        "param": None,
                        "code": "input_too_long",
                    }
                },
                status_code=400,
            )
        return JSONResponse({"ok": True})

    api.add_middleware(TracingMiddleware, telemetry=tel)
    return api


def b3(trace_id: str) -> dict[str, str]:
    return {
        "x-b3-traceid": trace_id,
        "x-b3-spanid": PARENT,
        "x-b3-sampled": "1",
        "x-request-id": "req-1",
    }


async def post(api: FastAPI, text: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
        return await client.post("/v1/audio/speech", json={"input": text}, headers=headers)


async def test_server_span_is_a_child_of_the_b3_parent_and_sets_log_ids() -> None:
    exporter = Collect()
    tel = telemetry(exporter)
    seen: list[dict[str, str]] = []
    response = await post(app(tel, seen), "hi", b3(TRACE_IN))
    assert response.status_code == 200
    tel.force_flush()
    (span,) = exporter.spans
    assert span.name == "POST /v1/audio/speech"
    assert f"{span.context.trace_id:032x}" == TRACE_IN
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
    attributes = dict(span.attributes or {})
    assert attributes["http.status_code"] == 200
    assert attributes["request_id"] == "req-1"
    assert seen == [{"request_id": "req-1", "trace_id": TRACE_IN}]
    assert ids() == {}


async def test_error_outside_the_ratio_is_written_afterwards_with_its_cause() -> None:
    exporter = Collect()
    tel = telemetry(exporter)
    response = await post(app(tel, []), "much too long", b3(TRACE_OUT))
    assert response.status_code == 400
    ok = await post(app(tel, []), "hi", b3(TRACE_OUT))
    assert ok.status_code == 200
    tel.force_flush()
    (span,) = exporter.spans  # the ok request outside the ratio left nothing
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "input_too_long"
    assert [dict(e.attributes or {})["error.cause"] for e in span.events] == ["input_too_long"]
    assert dict(span.attributes or {})["http.status_code"] == 400
    assert f"{span.parent.span_id:016x}" == PARENT  # type: ignore[union-attr]
    assert "much too long" not in repr(span.to_json())


async def test_without_telemetry_the_middleware_only_sets_the_request_id() -> None:
    seen: list[dict[str, str]] = []
    assert (await post(app(None, seen), "hi", b3(TRACE_IN))).status_code == 200
    assert seen == [{"request_id": "req-1"}]


def test_setup_worker_tracing_is_off_without_a_url() -> None:
    assert setup_worker_tracing("w", None) is None


async def test_collector_down_counts_drops_and_requests_are_unaffected() -> None:
    exporter = Collect(fail=True)
    tel = telemetry(exporter, ratio=1.0)
    for _ in range(3):
        assert (await post(app(tel, []), "hi", b3(TRACE_IN))).status_code == 200
    tel.force_flush()
    assert tel.counts.dropped["export_failed"] == 3
    assert tel.counts.exported == 0


async def test_queue_is_bounded_and_overflow_is_counted() -> None:
    exporter = Collect()
    exporter.gate.clear()  # the exporter thread is stuck: nothing leaves the queue
    tel = telemetry(exporter, ratio=1.0, max_queue_size=4)
    for _ in range(10):
        with tel.tracer.start_as_current_span("s"):
            pass
    assert tel.counts.dropped["queue_full"] >= 5
    exporter.gate.set()
    tel.force_flush()
    assert tel.counts.exported + tel.counts.dropped["queue_full"] == 10


def test_log_filter_adds_ids(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert TraceLogFilter().filter(record)
    assert record.request_id == "" and record.trace_id == ""  # type: ignore[attr-defined]
