"""Envoy's own error replies (no healthy backend, overflow, timeout) in OpenAI's error shape.

Without this Envoy answers 503/504 in text/plain ("upstream connect error ..."), which
breaks the gateway's contract that every error is `{"error": {...}}` JSON. Mappers are
keyed on Envoy's response flags, so replies the gateway filter builds itself (already
JSON, and flag-free) pass through untouched.
"""

from __future__ import annotations

from envoy.config.accesslog.v3.accesslog_pb2 import AccessLogFilter, ResponseFlagFilter
from envoy.config.core.v3.substitution_format_string_pb2 import SubstitutionFormatString
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.struct_pb2 import Struct

# (Envoy response flags, OpenAI error type, our error code, what the client should know)
_MAPPINGS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (
        ("UO",),
        "server_error",
        "overloaded",
        "the backend is at its concurrency limit; retry shortly",
    ),
    (
        ("UT",),
        "server_error",
        "timeout",
        "the backend did not answer within the model's timeout",
    ),
    (
        ("UH", "UF", "URX", "UC", "UR", "LR", "NC"),
        "server_error",
        "backend_unavailable",
        "no healthy backend could serve this request",
    ),
)


def _body(error_type: str, code: str, hint: str) -> SubstitutionFormatString:
    fmt = Struct()
    fmt.update(
        {
            "error": {
                "message": f"{hint} (%LOCAL_REPLY_BODY%)",
                "type": error_type,
                "param": None,
                "code": code,
                "request_id": "%REQ(X-REQUEST-ID)%",
            }
        }
    )
    return SubstitutionFormatString(json_format=fmt, content_type="application/json")


def local_reply_config() -> hcm_pb2.LocalReplyConfig:
    return hcm_pb2.LocalReplyConfig(
        mappers=[
            hcm_pb2.ResponseMapper(
                filter=AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=flags)),
                body_format_override=_body(error_type, code, hint),
            )
            for flags, error_type, code, hint in _MAPPINGS
        ]
    )
