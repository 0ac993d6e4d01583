"""The request-headers phase: remember the call, strip client x-tts-* headers, route voices."""

from __future__ import annotations

from urllib.parse import parse_qs

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HeaderMutation,
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.config_client import GatewayConfigSource
from gateway.errors import InvalidRequestError
from gateway.ext_proc.context import Endpoint, Outcome, RequestContext, classify
from gateway.ext_proc.headers import (
    FILTERED_HEADER,
    MODEL_HEADER,
    header_dict,
    mutation,
    reserved_headers,
)
from gateway.ext_proc.modes import CACHE_MODE, PASSTHROUGH_MODE
from gateway.ext_proc.responses import continue_request_headers
from gateway.ext_proc.routing import require_known_model


class RequestHeadersProcessor:
    def __init__(self, config_source: GatewayConfigSource, *, caching: bool = False) -> None:
        self._config_source = config_source
        # With a cache the filter must ask for the response headers now: Envoy ignores a
        # mode override sent with the body's answer (see modes.py).
        self._speech_mode = CACHE_MODE if caching else None

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        http_headers = request.request_headers
        headers = header_dict(http_headers.headers)
        ctx.method = headers.get(":method", "").upper()
        ctx.path, _, ctx.query = headers.get(":path", "").partition("?")
        ctx.endpoint = classify(ctx.method, ctx.path)
        ctx.request_id = headers.get("x-request-id", "")
        # Clients must not pick a route or a priority by sending our headers themselves;
        # this runs even without a config, because it needs none.
        ctx.stripped_headers = reserved_headers(headers)
        strip = mutation(remove=ctx.stripped_headers)
        # Envoy 1.40 has already matched a route with the client's headers when it asks
        # us (seen in tests/e2e/test_filter_envoy.py); a removal counts only with a clear.
        clear = bool(ctx.stripped_headers)

        if ctx.endpoint is Endpoint.SPEECH:
            if http_headers.end_of_stream:
                raise InvalidRequestError(
                    "The request body is required: a JSON object with 'model' and 'input'."
                )
            # Envoy buffers the body and sends it next; the route is picked then. Marking
            # the request keeps it off the degraded route meanwhile, so a rejection from
            # the body phase is not dressed as a filter outage. Before the first config
            # the filter fails open, and the degraded route is exactly what it needs.
            if self._config_source.current() is None:
                return continue_request_headers(strip, clear_route_cache=clear)
            marked = mutation(set_headers={FILTERED_HEADER: "1"}, remove=ctx.stripped_headers)
            return continue_request_headers(
                marked, clear_route_cache=True, mode_override=self._speech_mode
            )
        if ctx.endpoint is Endpoint.VOICES:
            return self._route_voices(ctx, strip)
        ctx.decide(Outcome.PASSTHROUGH)
        return continue_request_headers(
            strip, clear_route_cache=clear, mode_override=PASSTHROUGH_MODE
        )

    def _route_voices(
        self, ctx: RequestContext, strip: HeaderMutation | None
    ) -> ProcessingResponse:
        config = self._config_source.current()
        if config is None:
            # Fail open until the first config: see RequestBodyProcessor for why.
            ctx.decide(Outcome.PASSTHROUGH)
            return continue_request_headers(
                strip, clear_route_cache=strip is not None, mode_override=PASSTHROUGH_MODE
            )
        models = parse_qs(ctx.query).get("model", [])
        name = models[-1].strip() if models else ""
        if not name:
            raise InvalidRequestError(
                "Query parameter 'model' is required: GET /v1/audio/voices?model=<model>.",
                param="model",
            )
        ctx.model = require_known_model(config, name)
        ctx.decide(Outcome.ROUTED)
        return continue_request_headers(
            mutation(set_headers={MODEL_HEADER: ctx.model}, remove=ctx.stripped_headers),
            clear_route_cache=True,
            mode_override=PASSTHROUGH_MODE,
        )
