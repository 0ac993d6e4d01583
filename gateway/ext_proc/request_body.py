"""The request-body phase of POST /v1/audio/speech: validate the body, answer from the cache or
pick the model's route.

Until the first gateway-config arrives the filter fails open: it still rejects bodies
that are wrong under any config (checked against the default limits) but sets no model
header and lets Envoy route with its fallback. Rejecting every model as unknown instead
would turn a filter that merely started before the control plane into a gateway-wide
outage, and it matches what Envoy does when the filter is down (``failure_mode_allow``).
"""

from __future__ import annotations

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.config_client import GatewayConfigSource
from gateway.ext_proc.context import Endpoint, Outcome, RequestContext
from gateway.ext_proc.headers import mutation
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.responses import continue_request_body, continue_unchanged
from gateway.ext_proc.routing import require_known_model
from gateway.ext_proc.tracing import annotate, child_span
from gateway.speech import parse_speech_request
from ttsgw_contract.headers import MODEL_HEADER


class RequestBodyProcessor:
    def __init__(
        self, config_source: GatewayConfigSource, cache: ResponseCache | None = None
    ) -> None:
        self._config_source = config_source
        self._cache = cache
        # A cache follower waits for its leader's synthesis.
        self.may_wait = cache is not None

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        if ctx.endpoint is not Endpoint.SPEECH:
            ctx.decide(Outcome.PASSTHROUGH)
            return continue_unchanged(request)
        config = self._config_source.current()
        with child_span(ctx.trace, "validate"):
            speech = parse_speech_request(
                request.request_body.body, config.limits if config is not None else None
            )
            annotate(ctx.trace, **{"tts.text_length": len(speech.input)})
        if config is None:
            ctx.decide(Outcome.PASSTHROUGH)
            return continue_request_body()
        ctx.model = require_known_model(config, speech.model)
        annotate(ctx.trace, **{"tts.model": ctx.model, "tts.priority": ctx.priority})
        ctx.decide(Outcome.ROUTED)
        if self._cache is not None:
            with child_span(ctx.trace, "cache_lookup") as span:
                ctx.cache, hit = await self._cache.lookup(
                    config, speech, ctx.request_id, trace=ctx.trace
                )
                if span is not None:
                    span.set_attribute("tts.cache", ctx.cache.outcome)
            annotate(ctx.trace, **{"tts.cache": ctx.cache.outcome})
            if hit is not None:
                return hit
        return continue_request_body(
            mutation(set_headers={MODEL_HEADER: ctx.model}), clear_route_cache=True
        )
