"""The emitters' lean Zipkin JSON: OTel's encoding, less the resource and scope copies."""

from __future__ import annotations

import json

from opentelemetry import trace
from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder
from opentelemetry.exporter.zipkin.node_endpoint import NodeEndpoint
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ttsgw_common.telemetry.emitter import mark_error, setup_tracing
from ttsgw_common.telemetry.zipkin_json import LeanJsonV2Encoder, lean_zipkin_exporter

# The tags OTel's encoder copies onto every span, which the lean one leaves out.
COPIED = ("telemetry.sdk.", "service.", "otel.library.", "otel.scope.")


def recorded_spans() -> list:
    exporter = InMemorySpanExporter()
    telemetry = setup_tracing(
        "filter", "unused", sample_ratio=1.0, slow_threshold_s=10, exporter=exporter
    )
    tracer = telemetry.tracer
    with tracer.start_as_current_span("ext_proc request_body", kind=trace.SpanKind.SERVER) as s:
        s.set_attributes({"tts.model": "m", "tts.text_length": 5, "ok": True, "r": 0.5})
        s.set_attribute("list", ["a", "b"])
        mark_error(s, "input_too_long")
        with tracer.start_as_current_span("validate"):
            pass
    telemetry.shutdown()
    return list(exporter.get_finished_spans())


def test_lean_encoding_is_otels_without_the_copied_tags() -> None:
    spans = recorded_spans()
    endpoint = NodeEndpoint()
    endpoint.service_name = "filter"
    otel = json.loads(JsonV2Encoder(None).serialize(spans, endpoint))  # type: ignore[arg-type]
    lean = json.loads(LeanJsonV2Encoder(None).serialize(spans, endpoint))  # type: ignore[arg-type]
    for expected in otel:
        expected["tags"] = {k: v for k, v in expected["tags"].items() if not k.startswith(COPIED)}
        if not expected["tags"]:
            del expected["tags"]
        if expected["kind"] is None:
            del expected["kind"]
    assert lean == otel
    body = next(s for s in lean if s["name"] == "ext_proc request_body")
    assert body["tags"]["error"] == "input_too_long" and body["tags"]["ok"] == "true"
    assert body["tags"]["tts.text_length"] == "5" and body["tags"]["list"] == '["a","b"]'
    assert body["kind"] == "SERVER" and "input_too_long" in body["annotations"][0]["value"]
    child = next(s for s in lean if s["name"] == "validate")
    assert child["parentId"] == body["id"] and "kind" not in child


def test_the_emitters_exporter_uses_it() -> None:
    exporter = lean_zipkin_exporter("http://127.0.0.1:9/api/v2/spans", 1)
    assert isinstance(exporter.encoder, LeanJsonV2Encoder)
    exporter.shutdown()
