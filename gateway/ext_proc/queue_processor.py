"""GET /v1/queue on the gateway: the public view of how busy each model is, answered by the filter.

Built from the control plane's aggregate (gateway/queue_client.py) and sent back as an
immediate response from the request-headers phase, before Envoy's router (whose routes
would 404 a GET without a model) ever sees the request. The public view keeps what a
client can act on (per level: depth and estimated wait; in-flight; the busy hint) and
drops what is internal (backends, weights, endpoint addresses, errors).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HeaderMutation,
    HttpHeaders,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from gateway.ext_proc.admission import Admission
from gateway.ext_proc.headers import set_header
from gateway.ext_proc.processor import BaseProcessor, RequestHead
from gateway.ext_proc.routing import unknown_model
from gateway.openai_errors import CONTENT_TYPE
from gateway.queue_client import QueueStatusSource
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.queue_status import QueueAggregate


def public_view(aggregate: QueueAggregate, model: str | None = None) -> dict[str, Any]:
    """The body of GET /v1/queue; raises ModelNotFoundError for a model that is not configured."""
    if model is not None and model not in aggregate.models:
        raise unknown_model(model, sorted(aggregate.models))
    return aggregate.public(None if model is None else [model]).model_dump(mode="json")


class QueueView:
    """Answers GET /v1/queue[?model=M] from a QueueStatusSource."""

    def __init__(self, source: QueueStatusSource) -> None:
        self._source = source

    async def respond(self, query: str, request_id: str = "") -> ProcessingResponse:
        """The 200 answer; raises ModelNotFoundError (404) or QueueStatusUnavailableError (503)."""
        models = parse_qs(query).get("model", [])
        name = models[-1].strip() if models else ""
        body = public_view(await self._source.aggregate(), name or None)
        headers = [
            set_header("content-type", CONTENT_TYPE),
            # About a second old already; a cache in between would only make it older.
            set_header("cache-control", "no-store"),
        ]
        if request_id:
            headers.append(set_header("x-request-id", request_id))
        return ProcessingResponse(
            immediate_response=ImmediateResponse(
                status=HttpStatus(code=200),  # type: ignore[arg-type]
                headers=HeaderMutation(set_headers=headers),
                body=json.dumps(body, separators=(",", ":")).encode(),
                details="ttsgw_queue_view",
            )
        )


class QueueProcessor(BaseProcessor):
    """Answers in the request-headers phase: no route sends a GET without a model anywhere
    but the 404. Needs no config (admission does, when there is one)."""

    def __init__(
        self,
        head: RequestHead,
        config: GatewayConfig | None,
        admission: Admission,
        view: QueueView,
    ) -> None:
        super().__init__(head, config)
        self._admission = admission
        self._view = view

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse:
        self.admit(self._admission, stamp=False)
        return await self._view.respond(self.head.query, self.request_id)
