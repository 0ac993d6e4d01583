"""The filter's spans: its steps in the ratio, a phase span when a phase fails, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
)
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from gateway.config_client import StaticConfigSource
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.router import Router
from gateway.ext_proc.stream import ExtProcService
from gateway.ext_proc.tracing import StreamTrace, annotate, child_span
from ttsgw_common.telemetry.emitter import Telemetry, setup_tracing

IN_RATIO = "0" * 16 + "0000000000000001"
OUT_OF_RATIO = "0" * 16 + "ffffffffffffffff"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def exported() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = setup_tracing(
        "filter", "unused", sample_ratio=0.5, slow_threshold_s=10, exporter=exporter
    )
    yield telemetry, exporter
    telemetry.shutdown()


def b3(trace_id: str) -> dict[str, str]:
    return {"x-b3-traceid": trace_id, "x-b3-spanid": PARENT, "x-b3-sampled": "1"}


def run_request(stream: StreamTrace, fail: bool = False) -> None:
    with stream.phase("request_headers"):
        pass
    with stream.phase("request_body") as phase:
        with child_span(stream, "validate"):
            annotate(stream, **{"tts.text_length": 5})
        if fail:
            phase.fail("input_too_long", 413)


def run_cache_steps(stream: StreamTrace) -> None:
    with stream.phase("request_body"):
        annotate(stream, **{"tts.model": "m"})
        with child_span(stream, "cache_lookup"), child_span(stream, "single_flight_wait"):
            pass


def test_in_ratio_records_each_step_under_envoys_span_and_no_phase_span(exported) -> None:
    telemetry, exporter = exported
    stream = StreamTrace.start(telemetry, b3(IN_RATIO))
    assert stream is not None and stream.sampled and stream.trace_id == IN_RATIO
    run_request(stream)
    run_cache_steps(stream)
    telemetry.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"validate", "cache_lookup", "single_flight_wait"}
    for name in ("validate", "cache_lookup"):
        assert f"{spans[name].parent.span_id:016x}" == PARENT  # type: ignore[union-attr]
        assert f"{spans[name].context.trace_id:032x}" == IN_RATIO
    wait = spans["single_flight_wait"]
    assert wait.parent.span_id == spans["cache_lookup"].context.span_id  # type: ignore[union-attr]
    assert spans["validate"].attributes["tts.text_length"] == 5
    assert spans["cache_lookup"].attributes["tts.model"] == "m"
    # Nothing of the stream leaks into the next one's context.
    assert not trace.get_current_span().get_span_context().is_valid


def test_in_ratio_failure_adds_the_phase_span_beside_its_steps(exported) -> None:
    telemetry, exporter = exported
    stream = StreamTrace.start(telemetry, b3(IN_RATIO))
    assert stream is not None
    run_request(stream, fail=True)
    telemetry.force_flush()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"validate", "ext_proc request_body"}
    body = spans["ext_proc request_body"]
    assert f"{body.parent.span_id:016x}" == PARENT  # type: ignore[union-attr]
    assert body.status.description == "input_too_long"
    assert body.attributes["tts.text_length"] == 5
    assert body.start_time <= spans["validate"].start_time  # type: ignore[operator]


def test_out_of_ratio_records_nothing_when_all_goes_well(exported) -> None:
    telemetry, exporter = exported
    stream = StreamTrace.start(telemetry, b3(OUT_OF_RATIO))
    assert stream is not None and not stream.sampled and stream.trace_id == OUT_OF_RATIO
    run_request(stream)
    telemetry.force_flush()
    assert exporter.get_finished_spans() == ()


def test_out_of_ratio_failure_is_rescued_with_its_cause_and_parent(exported) -> None:
    telemetry, exporter = exported
    stream = StreamTrace.start(telemetry, b3(OUT_OF_RATIO))
    assert stream is not None
    run_request(stream, fail=True)
    telemetry.force_flush()
    (span,) = exporter.get_finished_spans()
    assert span.name == "ext_proc request_body"
    assert f"{span.parent.span_id:016x}" == PARENT  # type: ignore[union-attr]
    assert f"{span.context.trace_id:032x}" == OUT_OF_RATIO
    assert span.attributes["http.status_code"] == 413
    assert span.attributes["tts.text_length"] == 5
    assert span.status.description == "input_too_long"


def test_single_b3_header_and_no_context(exported) -> None:
    telemetry, _ = exported
    stream = StreamTrace.start(telemetry, {"b3": f"{IN_RATIO}-{PARENT}-1"})
    assert stream is not None and stream.sampled and stream.trace_id == IN_RATIO
    assert StreamTrace.start(telemetry, {"x-request-id": "r"}) is None
    assert StreamTrace.start(telemetry, {"x-b3-traceid": "zz", "x-b3-spanid": PARENT}) is None
    assert StreamTrace.start(None, b3(IN_RATIO)) is None


class _Context:
    """The part of grpc.aio.ServicerContext the stream loop reads."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self._metadata = tuple(metadata.items())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


OTHER_TRACE = "0" * 16 + "0000000000000003"


@pytest.mark.parametrize(
    ("metadata", "headers", "expected"),
    [
        (b3(IN_RATIO), b3(OTHER_TRACE), IN_RATIO),  # Envoy's ext_proc span wins
        ({}, b3(OTHER_TRACE), OTHER_TRACE),  # no metadata: the forwarded headers
    ],
    ids=["metadata", "headers"],
)
async def test_the_stream_starts_its_trace_once_from_metadata_or_headers(
    exported, monkeypatch, metadata, headers, expected
) -> None:
    telemetry, exporter = exported
    starts: list[str] = []
    start = StreamTrace.start.__func__  # type: ignore[attr-defined]

    def counting(cls, telemetry, carrier):
        stream = start(cls, telemetry, carrier)
        starts.append(stream.trace_id if stream else "")
        return stream

    monkeypatch.setattr(StreamTrace, "start", classmethod(counting))
    source = StaticConfigSource.of_models("espeak")
    service = ExtProcService(
        source, Router().select, FilterMetrics(CollectorRegistry(), source), telemetry=telemetry
    )
    pairs = {":method": "POST", ":path": "/v1/audio/speech", **headers}
    messages = [
        ProcessingRequest(
            request_headers=HttpHeaders(
                headers=HeaderMap(
                    headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
                )
            )
        ),
        ProcessingRequest(request_body=HttpBody(body=b'{"model": "espeak", "input": "hi"}')),
    ]

    async def iterate():
        for message in messages:
            yield message

    out = [r async for r in service.Process(iterate(), _Context(metadata))]  # type: ignore[arg-type]
    assert [r.WhichOneof("response") for r in out] == ["request_headers", "request_body"]
    assert starts == [expected]
    telemetry.force_flush()
    # Both traces are in the ratio: the step's span names the carrier that was chosen.
    (validate,) = exporter.get_finished_spans()
    assert validate.name == "validate"
    assert f"{validate.context.trace_id:032x}" == expected
