"""Envoy's own error replies (no healthy backend, overflow, timeout, too large) as OpenAI errors.

Without this Envoy answers 503/504 in text/plain ("upstream connect error ..."), and 413
"Payload Too Large", which breaks the gateway's contract that every error is
`{"error": {...}}` JSON. Mappers are keyed on Envoy's response flags or its response code
details, so replies the gateway filter builds itself (already JSON, flag-free, with
details of their own) pass through untouched.
"""

from __future__ import annotations

from envoy.config.accesslog.v3.accesslog_pb2 import (
    AccessLogFilter,
    AndFilter,
    ExtensionFilter,
    HeaderFilter,
    ResponseFlagFilter,
)
from envoy.config.core.v3.substitution_format_string_pb2 import SubstitutionFormatString
from envoy.config.route.v3.route_components_pb2 import HeaderMatcher
from envoy.extensions.access_loggers.filters.cel.v3.cel_pb2 import ExpressionFilter
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from google.protobuf.struct_pb2 import Struct
from google.protobuf.wrappers_pb2 import UInt32Value

from control_plane.translator.protos import header, packed
from ttsgw_contract.headers import PRIORITY_HEADER
from ttsgw_contract.limits import MAX_REQUEST_BODY_BYTES

CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
# What Envoy's filter manager says when a buffered body outgrows the connection's buffer
# limit; the filter's own 413s say ttsgw_filter_<code> (gateway/ext_proc/responses.py).
PAYLOAD_TOO_LARGE_DETAILS = "request_payload_too_large"

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


def _body(
    error_type: str, code: str, hint: str, message: str = "{hint} (%LOCAL_REPLY_BODY%)"
) -> SubstitutionFormatString:
    fmt = Struct()
    fmt.update(
        {
            "error": {
                "message": message.format(hint=hint),
                "type": error_type,
                "param": None,
                "code": code,
                "request_id": "%REQ(X-REQUEST-ID)%",
                "trace_id": "%TRACE_ID%",
            }
        }
    )
    return SubstitutionFormatString(json_format=fmt, content_type="application/json")


def _shed_low_priority() -> hcm_pb2.ResponseMapper:
    """Low-priority overflow is shed as 429 with Retry-After, so clients back off.

    Default and high overflow stay 503 `overloaded`: high has its own budget, and
    default traffic did nothing a retry later would fix sooner.
    """
    is_low = HeaderFilter(
        header=HeaderMatcher(name=PRIORITY_HEADER, string_match=StringMatcher(exact="low"))
    )
    overflow = AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=["UO"]))
    return hcm_pb2.ResponseMapper(
        filter=AccessLogFilter(
            and_filter=AndFilter(filters=[overflow, AccessLogFilter(header_filter=is_low)])
        ),
        status_code=UInt32Value(value=429),
        headers_to_add=[header("retry-after", "1")],
        body_format_override=_body(
            "rate_limit_error",
            "shed",
            "the backend is at its limit and low-priority requests are shed first; retry later",
        ),
    )


def _body_too_large() -> hcm_pb2.ResponseMapper:
    """The 413 Envoy sends when a body outgrows the buffer, before the filter could judge it.

    Response flags do not tell it apart from the filter's own 413s (neither has one), so
    the mapper matches Envoy's response code details, through a CEL filter.
    """
    expression = ExpressionFilter(
        expression=f"response.code_details == '{PAYLOAD_TOO_LARGE_DETAILS}'"
    )
    too_large = AccessLogFilter(
        extension_filter=ExtensionFilter(name=CEL_FILTER, typed_config=packed(expression))
    )
    hint = f"the request body is larger than the gateway's limit of {MAX_REQUEST_BODY_BYTES} bytes"
    return hcm_pb2.ResponseMapper(
        filter=too_large,
        status_code=UInt32Value(value=413),
        body_format_override=_body("invalid_request_error", "request_too_large", hint, "{hint}"),
    )


def local_reply_config() -> hcm_pb2.LocalReplyConfig:
    # The first mapper that matches wins, so the low-priority shed comes first.
    return hcm_pb2.LocalReplyConfig(
        mappers=[
            _shed_low_priority(),
            _body_too_large(),
            *(
                hcm_pb2.ResponseMapper(
                    filter=AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=flags)),
                    body_format_override=_body(error_type, code, hint),
                )
                for flags, error_type, code, hint in _MAPPINGS
            ),
        ]
    )
