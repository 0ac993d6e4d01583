"""Zipkin v2 in protobuf (``zipkin.proto3.ListOfSpans``): what Envoy reports to the relay.

Envoy's Zipkin tracer serializes JSON through protobuf's JSON printer, which cost it
about 100 us per span on our box, more than the rest of its tracing together; with
``HTTP_PROTO`` it costs a few. So Envoy reports protobuf, and the relay parses it with
the upb C parser instead of ``json.loads``: a trace that is dropped (most of them) is
never turned into Python dicts. Only kept spans become Zipkin v2 JSON (``to_json``) on
their way to the collector.

No protoc here, and no generated module ships the schema, so the message classes are
built from a hand-written descriptor of openzipkin/zipkin-api's ``zipkin.proto``.

Envoy's quirk: it writes the trace id big-endian, as the spec says, but the span and parent
ids as the raw bytes of a host ``uint64`` (``Util::toByteString``), i.e. little-endian on
x86-64 and arm64. ``to_json`` turns them back into the hex ids Envoy puts in B3 headers and
in its JSON, so the filter's and the workers' parent links still match
(tests/e2e/test_tracing.py checks them).
"""

from __future__ import annotations

import socket
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ttsgw_common.telemetry.relay import Digest

CONTENT_TYPE = "application/x-protobuf"

_F = descriptor_pb2.FieldDescriptorProto
_KINDS = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}


def _message(name: str, *fields: tuple[str, int, int, str]) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind)
        field.label = _F.LABEL_OPTIONAL
        if type_name:
            field.type_name = type_name
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="ttsgw/zipkin.proto", package="zipkin.proto3", syntax="proto3"
    )
    span = _message(
        "Span",
        ("trace_id", 1, _F.TYPE_BYTES, ""),
        ("parent_id", 2, _F.TYPE_BYTES, ""),
        ("id", 3, _F.TYPE_BYTES, ""),
        ("kind", 4, _F.TYPE_ENUM, ".zipkin.proto3.Span.Kind"),
        ("name", 5, _F.TYPE_STRING, ""),
        ("timestamp", 6, _F.TYPE_FIXED64, ""),
        ("duration", 7, _F.TYPE_UINT64, ""),
        ("local_endpoint", 8, _F.TYPE_MESSAGE, ".zipkin.proto3.Endpoint"),
        ("remote_endpoint", 9, _F.TYPE_MESSAGE, ".zipkin.proto3.Endpoint"),
        ("annotations", 10, _F.TYPE_MESSAGE, ".zipkin.proto3.Annotation"),
        ("tags", 11, _F.TYPE_MESSAGE, ".zipkin.proto3.Span.TagsEntry"),
        ("debug", 12, _F.TYPE_BOOL, ""),
        ("shared", 13, _F.TYPE_BOOL, ""),
    )
    for repeated in (span.field[9], span.field[10]):
        repeated.label = _F.LABEL_REPEATED
    kind = span.enum_type.add(name="Kind")
    for number, name in ((0, "SPAN_KIND_UNSPECIFIED"), *_KINDS.items()):
        kind.value.add(name=name, number=number)
    entry = _message("TagsEntry", ("key", 1, _F.TYPE_STRING, ""), ("value", 2, _F.TYPE_STRING, ""))
    entry.options.map_entry = True
    span.nested_type.append(entry)
    endpoint = _message(
        "Endpoint",
        ("service_name", 1, _F.TYPE_STRING, ""),
        ("ipv4", 2, _F.TYPE_BYTES, ""),
        ("ipv6", 3, _F.TYPE_BYTES, ""),
        ("port", 4, _F.TYPE_INT32, ""),
    )
    annotation = _message(
        "Annotation", ("timestamp", 1, _F.TYPE_FIXED64, ""), ("value", 2, _F.TYPE_STRING, "")
    )
    spans = _message("ListOfSpans", ("spans", 1, _F.TYPE_MESSAGE, ".zipkin.proto3.Span"))
    spans.field[0].label = _F.LABEL_REPEATED
    f.message_type.extend([span, endpoint, annotation, spans])
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
ListOfSpans: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("zipkin.proto3.ListOfSpans")
)
ProtoSpan: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("zipkin.proto3.Span"))


def parse(body: bytes) -> Any:
    """The report's spans (a repeated field of ``zipkin.proto3.Span``); DecodeError if not one."""
    return ListOfSpans.FromString(body).spans


def digest(span: Any) -> Digest | None:
    """``relay.digest_json`` for a protobuf span, without building a dict."""
    if not span.trace_id:
        return None
    trace_id = span.trace_id.hex().rjust(32, "0")
    tags = span.tags
    if span.parent_id:
        return trace_id, False, "error" in tags, 0.0, False
    # The same rules as relay.is_error and relay.client_went_away, on the tag map.
    status = tags.get("http.status_code", "")
    error = "error" in tags or (status.isdigit() and int(status) >= 400)
    went_away = tags.get("response_flags") == "DC" and (status or "0") == "0"
    return trace_id, True, error, span.duration / 1e6, went_away


def to_json(span: Any) -> dict[str, Any]:
    """An Envoy protobuf span as the Zipkin v2 JSON object Envoy would have posted."""
    out: dict[str, Any] = {"traceId": span.trace_id.hex(), "id": span.id[::-1].hex()}
    if span.parent_id:
        out["parentId"] = span.parent_id[::-1].hex()
    if span.kind in _KINDS:
        out["kind"] = _KINDS[span.kind]
    if span.name:
        out["name"] = span.name
    if span.timestamp:
        out["timestamp"] = span.timestamp
    if span.duration:
        out["duration"] = span.duration
    if span.HasField("local_endpoint"):
        out["localEndpoint"] = _endpoint(span.local_endpoint)
    if span.HasField("remote_endpoint"):
        out["remoteEndpoint"] = _endpoint(span.remote_endpoint)
    if span.annotations:
        out["annotations"] = [
            {"timestamp": a.timestamp, "value": a.value} for a in span.annotations
        ]
    if span.tags:
        out["tags"] = dict(span.tags)
    if span.debug:
        out["debug"] = True
    if span.shared:
        out["shared"] = True
    return out


def _endpoint(endpoint: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if endpoint.service_name:
        out["serviceName"] = endpoint.service_name
    if len(endpoint.ipv4) == 4:
        out["ipv4"] = socket.inet_ntop(socket.AF_INET, endpoint.ipv4)
    if len(endpoint.ipv6) == 16:
        out["ipv6"] = socket.inet_ntop(socket.AF_INET6, endpoint.ipv6)
    if endpoint.port:
        out["port"] = endpoint.port
    return out
