"""POST /v1/audio/speech: mark the request, validate its body, answer from the cache or route it.

Until the first gateway-config arrives the filter fails open: it still rejects bodies
that are wrong under any config (checked against the default limits) but sets no model
header and lets Envoy route with its fallback. Rejecting every model as unknown instead
would turn a filter that merely started before the control plane into a gateway-wide
outage, and it matches what Envoy does when the filter is down (``failure_mode_allow``).

The response phases come only when the filter asked for them (``modes.CACHE_MODE`` from
the request headers, ``modes.FILL_MODE`` from the response headers), so requests the
cache has nothing to do with never pay for them.
"""

from __future__ import annotations

import asyncio

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeadersResponse,
    HttpBody,
    HttpHeaders,
    ProcessingResponse,
)

from gateway.errors import InvalidRequestError
from gateway.ext_proc.admission import Admission
from gateway.ext_proc.headers import mutation
from gateway.ext_proc.processor import BaseProcessor, Outcome, RequestHead
from gateway.ext_proc.response_cache import ResponseCache, SpeechCache
from gateway.ext_proc.responses import continue_request_body, continue_request_headers
from gateway.ext_proc.routing import require_known_model
from gateway.ext_proc.tracing import StreamTrace, annotate, child_span
from gateway.speech import parse_speech_request
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.headers import CACHE_HEADER, FILTERED_HEADER, MODEL_HEADER
from ttsgw_contract.modes import CACHE_MODE, FILL_MODE

# Bodies up to this size parse in about a millisecond; larger ones go to a thread.
_PARSE_INLINE_BYTES = 256 * 1024


class SpeechProcessor(BaseProcessor):
    def __init__(
        self,
        head: RequestHead,
        config: GatewayConfig | None,
        admission: Admission,
        cache: ResponseCache | None = None,
        trace: StreamTrace | None = None,
    ) -> None:
        super().__init__(head, config)
        self._admission = admission
        self._response_cache = cache
        self._trace = trace
        # This request's part of the cache, once its body has been validated.
        self.cache: SpeechCache | None = None

    def may_wait(self, phase: str) -> bool:
        # A cache follower waits for its leader's synthesis, and a body of megabytes is
        # parsed off the event loop: either can outlast Envoy's message timer.
        return phase == "request_body"

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse:
        stamped = self.admit(self._admission, stamp=True)
        if message.end_of_stream:
            raise InvalidRequestError(
                "The request body is required: a JSON object with 'model' and 'input'."
            )
        strip = self.head.reserved
        # Envoy buffers the body and sends it next; the route is picked then. Marking the
        # request keeps it off the degraded route meanwhile, so a rejection from the body
        # phase is not dressed as a filter outage. Before the first config the filter
        # fails open, and the degraded route is exactly what it needs. The mark is a
        # secret the routes that grant priority match, so a client cannot claim a
        # priority while the filter is down.
        if self.config is None:
            return continue_request_headers(mutation(remove=strip), clear_route_cache=bool(strip))
        marker = self.config.auth.route_secret or "1"
        marked = mutation(set_headers={**stamped, FILTERED_HEADER: marker}, remove=strip)
        # With a cache the filter must ask for the response headers now: Envoy ignores a
        # mode override sent with the body's answer (see modes.py).
        mode = CACHE_MODE if self._response_cache is not None else None
        return continue_request_headers(marked, clear_route_cache=True, mode_override=mode)

    async def request_body(self, message: HttpBody) -> ProcessingResponse:
        config = self.config
        with child_span(self._trace, "validate"):
            limits = config.limits if config is not None else None
            if len(message.body) > _PARSE_INLINE_BYTES:
                # Off the loop, so the stream loop's timer can ask Envoy for more time
                # instead of Envoy failing the request open as filter_timeout.
                speech = await asyncio.to_thread(parse_speech_request, message.body, limits)
            else:
                speech = parse_speech_request(message.body, limits)
            annotate(self._trace, **{"tts.text_length": len(speech.input)})
        if config is None:
            self.decide(Outcome.PASSTHROUGH)
            return continue_request_body()
        self.model = require_known_model(config, speech.model)
        annotate(self._trace, **{"tts.model": self.model, "tts.priority": self.priority})
        self.decide(Outcome.ROUTED)
        if self._response_cache is not None:
            self.cache = self._response_cache.request(config, self.request_id, self._trace)
            with child_span(self._trace, "cache_lookup") as span:
                hit = await self.cache.lookup(speech)
                if span is not None:
                    span.set_attribute("tts.cache", self.cache.outcome or "")
            annotate(self._trace, **{"tts.cache": self.cache.outcome or ""})
            if hit is not None:
                return hit
        return continue_request_body(
            mutation(set_headers={MODEL_HEADER: self.model}), clear_route_cache=True
        )

    async def response_headers(self, message: HttpHeaders) -> ProcessingResponse:
        if self.cache is None or self.cache.outcome is None:
            return ProcessingResponse(response_headers=HeadersResponse())
        common = CommonResponse(
            header_mutation=mutation(set_headers={CACHE_HEADER: self.cache.outcome})
        )
        response = ProcessingResponse(response_headers=HeadersResponse(response=common))
        if self.cache.start_fill(message.headers, message.end_of_stream):
            response.mode_override.CopyFrom(FILL_MODE)
        return response

    async def response_body(self, message: HttpBody) -> ProcessingResponse:
        if self.cache is not None:
            self.cache.add_chunk(message.body, message.end_of_stream)
        return ProcessingResponse(response_body=BodyResponse())

    def close(self) -> None:
        # However the stream ends (client gone, upstream reset, filter bug), a fill this
        # request leads is over: its followers must not wait in vain.
        if self.cache is not None:
            self.cache.abandon()
