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
from gateway.ext_proc.admission import Admission
from gateway.ext_proc.context import Endpoint, Outcome, RequestContext, classify
from gateway.ext_proc.headers import header_dict, mutation, reserved_headers
from gateway.ext_proc.queue_view import QueueView
from gateway.ext_proc.responses import continue_request_headers
from gateway.ext_proc.routing import require_known_model
from ttsgw_contract.headers import CLASS_HEADER, FILTERED_HEADER, MODEL_HEADER, PRIORITY_HEADER
from ttsgw_contract.modes import CACHE_MODE, PASSTHROUGH_MODE


class RequestHeadersProcessor:
    may_wait = False

    def __init__(
        self,
        config_source: GatewayConfigSource,
        *,
        caching: bool = False,
        queue_view: QueueView | None = None,
    ) -> None:
        self._config_source = config_source
        self._queue_view = queue_view
        self._admission = Admission()
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

        config = self._config_source.current()
        stamped: dict[str, str] = {}
        if config is not None and ctx.path.startswith("/v1/"):
            # Every API call is admitted (401, 429); only the ones Envoy routes to a
            # backend carry the class on, since a route-cache clear is not free.
            admitted = self._admission.admit(headers.get("authorization"), config.auth)
            ctx.priority, ctx.priority_class = admitted.level, admitted.priority_class
            if ctx.endpoint is not Endpoint.OTHER:
                stamped = {PRIORITY_HEADER: admitted.level, CLASS_HEADER: admitted.priority_class}

        if ctx.endpoint is Endpoint.SPEECH:
            if http_headers.end_of_stream:
                raise InvalidRequestError(
                    "The request body is required: a JSON object with 'model' and 'input'."
                )
            # Envoy buffers the body and sends it next; the route is picked then. Marking
            # the request keeps it off the degraded route meanwhile, so a rejection from
            # the body phase is not dressed as a filter outage. Before the first config
            # the filter fails open, and the degraded route is exactly what it needs. The
            # mark is a secret the routes that grant priority match, so a client cannot
            # claim a priority while the filter is down.
            if config is None:
                return continue_request_headers(strip, clear_route_cache=clear)
            marker = config.auth.route_secret or "1"
            marked = mutation(
                set_headers={**stamped, FILTERED_HEADER: marker}, remove=ctx.stripped_headers
            )
            return continue_request_headers(
                marked, clear_route_cache=True, mode_override=self._speech_mode
            )
        if ctx.endpoint is Endpoint.VOICES:
            return self._route_voices(ctx, strip, stamped)
        if ctx.endpoint is Endpoint.QUEUE and self._queue_view is not None:
            # Answered here: no route sends a GET without a model anywhere but the 404.
            return await self._queue_view.respond(ctx)
        if ctx.endpoint is Endpoint.VOICE_REGISTRY:
            return self._route_voice_registry(ctx, strip, stamped)
        ctx.decide(Outcome.PASSTHROUGH)
        return continue_request_headers(
            strip, clear_route_cache=clear, mode_override=PASSTHROUGH_MODE
        )

    @staticmethod
    def _fail_open(ctx: RequestContext, strip: HeaderMutation | None) -> ProcessingResponse:
        # Until the first config arrives: see RequestBodyProcessor for why this fails open.
        ctx.decide(Outcome.PASSTHROUGH)
        return continue_request_headers(
            strip, clear_route_cache=strip is not None, mode_override=PASSTHROUGH_MODE
        )

    def _route_voices(
        self, ctx: RequestContext, strip: HeaderMutation | None, stamped: dict[str, str]
    ) -> ProcessingResponse:
        config = self._config_source.current()
        if config is None:
            return self._fail_open(ctx, strip)
        name = _query_model(ctx)
        if not name:
            raise InvalidRequestError(
                "Query parameter 'model' is required: GET /v1/audio/voices?model=<model>.",
                param="model",
            )
        return _route_unread(ctx, require_known_model(config, name), stamped)

    def _route_voice_registry(
        self, ctx: RequestContext, strip: HeaderMutation | None, stamped: dict[str, str]
    ) -> ProcessingResponse:
        """/v1/voices goes to ``?model=`` or the config's voice model, body unread, uncached."""
        config = self._config_source.current()
        if config is None:
            return self._fail_open(ctx, strip)
        name = _query_model(ctx)
        default = config.voices.default_model
        if name:
            ctx.model = require_known_model(config, name)
            if config.models[ctx.model].clones_voices is False:
                raise InvalidRequestError(
                    f"The model '{ctx.model}' cannot clone voices; {_cloning_hint(default)}",
                    param="model",
                )
        elif default is not None and default in config.models:
            ctx.model = default
        else:
            raise InvalidRequestError(
                "No model can clone voices: a voice-cloning model needs cosyvoice3 backends "
                "only. Name one with ?model=<model>.",
                param="model",
            )
        return _route_unread(ctx, ctx.model, stamped)


def _route_unread(ctx: RequestContext, model: str, stamped: dict[str, str]) -> ProcessingResponse:
    """Route to `model` with the body unread: Envoy streams it (a voice clip can be 30 s)
    to the worker without buffering it for the filter, and no response phase (no cache)
    follows."""
    ctx.model = model
    ctx.decide(Outcome.ROUTED)
    return continue_request_headers(
        mutation(set_headers={**stamped, MODEL_HEADER: model}, remove=ctx.stripped_headers),
        clear_route_cache=True,
        mode_override=PASSTHROUGH_MODE,
    )


def _cloning_hint(default_model: str | None) -> str:
    if default_model is None:
        return "no configured model can."
    return f"use ?model={default_model} or leave model out."


def _query_model(ctx: RequestContext) -> str:
    """The last ``?model=`` of the request, stripped; "" when absent."""
    models = parse_qs(ctx.query).get("model", [])
    return models[-1].strip() if models else ""
