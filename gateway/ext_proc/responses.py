"""Builders for the ProcessingResponse messages the processors send back to Envoy."""

from __future__ import annotations

from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
    TrailersResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from gateway.errors import RateLimitedError, RequestRejected
from gateway.ext_proc.headers import set_header
from gateway.openai_errors import CONTENT_TYPE, error_body, internal_error_body


def _common(header_mutation: HeaderMutation | None, clear_route_cache: bool) -> CommonResponse:
    common = CommonResponse(clear_route_cache=clear_route_cache)
    if header_mutation is not None:
        common.header_mutation.CopyFrom(header_mutation)
    return common


def continue_request_headers(
    header_mutation: HeaderMutation | None = None,
    *,
    clear_route_cache: bool = False,
    mode_override: ProcessingMode | None = None,
) -> ProcessingResponse:
    response = ProcessingResponse(
        request_headers=HeadersResponse(response=_common(header_mutation, clear_route_cache))
    )
    if mode_override is not None:
        response.mode_override.CopyFrom(mode_override)
    return response


def continue_request_body(
    header_mutation: HeaderMutation | None = None, *, clear_route_cache: bool = False
) -> ProcessingResponse:
    return ProcessingResponse(
        request_body=BodyResponse(response=_common(header_mutation, clear_route_cache))
    )


def continue_unchanged(request: ProcessingRequest) -> ProcessingResponse:
    """The do-nothing answer for whatever phase ``request`` is in (the fail-open reply)."""
    phase = request.WhichOneof("request")
    if phase in ("request_headers", "response_headers"):
        return ProcessingResponse(**{phase: HeadersResponse()})
    if phase in ("request_body", "response_body"):
        return ProcessingResponse(**{phase: BodyResponse()})
    if phase in ("request_trailers", "response_trailers"):
        return ProcessingResponse(**{phase: TrailersResponse()})
    raise ValueError(f"ProcessingRequest without a phase: {phase!r}")


def reject(exc: RequestRejected, *, request_id: str = "", trace_id: str = "") -> ProcessingResponse:
    """Answer the client directly with OpenAI's error shape; the request goes no further.

    The request and trace ids ride in the error object, so one id from a client's bug
    report finds the access log line, the trace and the logs.
    """
    headers = [set_header("content-type", CONTENT_TYPE)]
    if isinstance(exc, RateLimitedError):
        headers.append(set_header("retry-after", str(exc.retry_after_s)))
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=exc.status),  # type: ignore[arg-type]
            headers=HeaderMutation(set_headers=headers),
            body=error_body(exc, request_id=request_id, trace_id=trace_id),
            details=f"ttsgw_filter_{exc.code or 'rejected'}",
        )
    )


def internal_error(*, request_id: str = "", trace_id: str = "") -> ProcessingResponse:
    """The 500 for a filter bug in a request phase, in OpenAI's shape (stream.py says why)."""
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=500),  # type: ignore[arg-type]
            headers=HeaderMutation(set_headers=[set_header("content-type", CONTENT_TYPE)]),
            body=internal_error_body(request_id=request_id, trace_id=trace_id),
            details="ttsgw_filter_error",
        )
    )
