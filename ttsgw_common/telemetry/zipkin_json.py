"""Zipkin v2 JSON for the emitters' exporter: each span's own tags, encoded in one pass.

OpenTelemetry's ``JsonV2Encoder`` copies the resource's attributes (``telemetry.sdk.*``,
``service.name``) and four scope tags onto every span and checks each value's type
through several generic helpers: about 22 µs a span, on the exporter thread of the
filter, our bottleneck, where it competes for the GIL. The service is already the span's
``localEndpoint``; the rest said nothing a trace reader needs. This encoder writes what
the spans here carry (strings, numbers and booleans as tags, the status as ``error``,
events as annotations) in a few µs, and keeps OTel's output for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

_KINDS = {
    SpanKind.SERVER: "SERVER",
    SpanKind.CLIENT: "CLIENT",
    SpanKind.PRODUCER: "PRODUCER",
    SpanKind.CONSUMER: "CONSUMER",
}


class LeanJsonV2Encoder(JsonV2Encoder):
    """``JsonV2Encoder`` without the per-span copies of the resource and scope."""

    def _encode_span(self, span: ReadableSpan, encoded_local_endpoint: dict) -> dict:  # type: ignore[override]
        context = span.context
        start = span.start_time or 0
        encoded: dict[str, Any] = {
            "traceId": f"{context.trace_id:032x}",
            "id": f"{context.span_id:016x}",
            "name": span.name,
            "timestamp": (start + 500) // 1000,
            "duration": ((span.end_time or start) - start + 500) // 1000,
            "localEndpoint": encoded_local_endpoint,
        }
        kind = _KINDS.get(span.kind)
        if kind is not None:
            encoded["kind"] = kind
        if span.parent is not None:
            encoded["parentId"] = f"{span.parent.span_id:016x}"
        tags = {key: _tag(value) for key, value in (span.attributes or {}).items()}
        status = span.status.status_code
        if status is not StatusCode.UNSET:
            tags["otel.status_code"] = status.name
            if status is StatusCode.ERROR:
                tags["error"] = span.status.description or ""
        if tags:
            encoded["tags"] = tags
        if span.events:
            encoded["annotations"] = self._extract_annotations_from_events(list(span.events))
        if context.trace_flags.sampled:
            encoded["debug"] = True
        return encoded


def _tag(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Sequence):
        # OTel's form: a JSON array of strings.
        return json.dumps([None if v is None else _tag(v) for v in value], separators=(",", ":"))
    return str(value)


def lean_zipkin_exporter(endpoint: str, timeout_s: int) -> ZipkinExporter:
    """OTel's Zipkin JSON exporter (HTTP, session, errors) with the lean encoder."""
    exporter = ZipkinExporter(endpoint=endpoint, timeout=timeout_s)
    # No truncation, as OTel's default for this exporter.
    exporter.encoder = LeanJsonV2Encoder(max_tag_value_length=None)  # type: ignore[arg-type,assignment]
    return exporter
