"""The request-body phase of POST /v1/audio/speech: parse the JSON, pick the model's route.

Until the first gateway-config arrives the filter fails open: it still rejects bodies
that are wrong under any config (not JSON, no model, no input) but sets no model header
and lets Envoy route with its fallback. Rejecting every model as unknown instead would
turn a filter that merely started before the control plane into a gateway-wide outage,
and it matches what Envoy does when the filter is down (``failure_mode_allow``).
"""

from __future__ import annotations

import json
from typing import Any

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.config_client import GatewayConfigSource
from gateway.errors import InvalidRequestError
from gateway.ext_proc.context import Endpoint, Outcome, RequestContext
from gateway.ext_proc.headers import MODEL_HEADER, mutation
from gateway.ext_proc.responses import continue_request_body, continue_unchanged
from gateway.ext_proc.routing import require_known_model


class RequestBodyProcessor:
    def __init__(self, config_source: GatewayConfigSource) -> None:
        self._config_source = config_source

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        if ctx.endpoint is not Endpoint.SPEECH:
            ctx.decide(Outcome.PASSTHROUGH)
            return continue_unchanged(request)
        payload = parse_speech_request(request.request_body.body)
        config = self._config_source.current()
        if config is None:
            ctx.decide(Outcome.PASSTHROUGH)
            return continue_request_body()
        ctx.model = require_known_model(config, payload["model"])
        ctx.decide(Outcome.ROUTED)
        return continue_request_body(
            mutation(set_headers={MODEL_HEADER: ctx.model}), clear_route_cache=True
        )


def parse_speech_request(body: bytes) -> dict[str, Any]:
    """The body as a dict, with the fields the filter routes on checked (issue 3 adds more)."""
    if not body:
        raise InvalidRequestError(
            "The request body is required: a JSON object with 'model' and 'input'."
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    model = payload.get("model")
    if model is None:
        raise InvalidRequestError("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("'model' must be a non-empty string.", param="model")
    text = payload.get("input")
    if text is None:
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("'input' must be a non-empty string.", param="input")
    return payload
