"""The response phases of a speech request: ``x-tts-cache`` on the headers, the cache fill.

Envoy sends these only when the filter asked for them (``modes.CACHE_MODE`` from the
request headers, ``modes.FILL_MODE`` from the response headers), so requests the cache
has nothing to do with never pay for them.
"""

from __future__ import annotations

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeadersResponse,
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.ext_proc.context import RequestContext
from gateway.ext_proc.headers import mutation
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.responses import continue_unchanged
from ttsgw_contract.headers import CACHE_HEADER
from ttsgw_contract.modes import FILL_MODE


class ResponseHeadersProcessor:
    may_wait = False

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        state = ctx.cache
        if state is None:
            return continue_unchanged(request)
        headers = request.response_headers
        common = CommonResponse(header_mutation=mutation(set_headers={CACHE_HEADER: state.outcome}))
        response = ProcessingResponse(response_headers=HeadersResponse(response=common))
        if self._cache.start_fill(state, headers.headers, headers.end_of_stream):
            response.mode_override.CopyFrom(FILL_MODE)
        return response


class ResponseBodyProcessor:
    may_wait = False

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        if ctx.cache is not None:
            body = request.response_body
            self._cache.add_chunk(ctx.cache, body.body, body.end_of_stream)
        return ProcessingResponse(response_body=BodyResponse())
