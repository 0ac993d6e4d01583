"""GET /v1/audio/voices?model=M and the voice registry (/v1/voices...): routed by the query.

Both go to a model with the body unread: Envoy streams it (a voice clip can be 30 s) to
the worker without buffering it for the filter, and no response phase (no cache)
follows. The router hands these a config: before the first one they pass through.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from envoy.service.ext_proc.v3.external_processor_pb2 import HttpHeaders, ProcessingResponse

from gateway.errors import InvalidRequestError
from gateway.ext_proc.admission import Admission
from gateway.ext_proc.headers import mutation
from gateway.ext_proc.processor import BaseProcessor, Outcome, RequestHead
from gateway.ext_proc.responses import continue_request_headers
from gateway.ext_proc.routing import require_known_model
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.headers import MODEL_HEADER
from ttsgw_contract.modes import PASSTHROUGH_MODE


class _UnreadBodyProcessor(BaseProcessor):
    """Routes to the model ``pick`` names, in the request-headers phase."""

    def __init__(self, head: RequestHead, config: GatewayConfig, admission: Admission) -> None:
        super().__init__(head, config)
        self._config = config
        self._admission = admission

    def pick(self) -> str:
        raise NotImplementedError

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse:
        stamped = self.admit(self._admission, stamp=True)
        self.model = self.pick()
        self.decide(Outcome.ROUTED)
        return continue_request_headers(
            mutation(set_headers={**stamped, MODEL_HEADER: self.model}, remove=self.head.reserved),
            clear_route_cache=True,
            mode_override=PASSTHROUGH_MODE,
        )

    def query_model(self) -> str:
        """The last ``?model=`` of the request, stripped; "" when absent."""
        models = parse_qs(self.head.query).get("model", [])
        return models[-1].strip() if models else ""


class VoicesProcessor(_UnreadBodyProcessor):
    """GET /v1/audio/voices: the model is required (400) and must be known (404)."""

    def pick(self) -> str:
        name = self.query_model()
        if not name:
            raise InvalidRequestError(
                "Query parameter 'model' is required: GET /v1/audio/voices?model=<model>.",
                param="model",
            )
        return require_known_model(self._config, name)


class VoiceRegistryProcessor(_UnreadBodyProcessor):
    """/v1/voices goes to ``?model=`` or the config's voice model, body unread, uncached."""

    def pick(self) -> str:
        name = self.query_model()
        default = self._config.voices.default_model
        if name:
            # Known, so a rejection below is counted under it.
            model = self.model = require_known_model(self._config, name)
            if self._config.models[model].clones_voices is False:
                raise InvalidRequestError(
                    f"The model '{model}' cannot clone voices; {_cloning_hint(default)}",
                    param="model",
                )
            return model
        if default is not None and default in self._config.models:
            return default
        raise InvalidRequestError(
            "No model can clone voices: a voice-cloning model needs cosyvoice3 backends "
            "only. Name one with ?model=<model>.",
            param="model",
        )


def _cloning_hint(default_model: str | None) -> str:
    if default_model is None:
        return "no configured model can."
    return f"use ?model={default_model} or leave model out."
