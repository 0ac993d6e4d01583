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
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from gateway.ext_proc.context import RequestContext
from gateway.ext_proc.headers import set_header
from gateway.ext_proc.routing import unknown_model
from gateway.openai_errors import CONTENT_TYPE
from gateway.queue_client import QueueStatusSource

LEVELS = ("high", "default", "low")


def public_model(entry: dict[str, Any]) -> dict[str, Any]:
    """One model of the control plane's aggregate, without anything internal."""
    levels = entry.get("levels") or {}
    return {
        "busy": entry.get("busy", "unknown"),
        "queued": entry.get("queued", 0),
        "in_flight": entry.get("in_flight", 0),
        "levels": {
            level: {
                "depth": (levels.get(level) or {}).get("depth", 0),
                "estimated_wait_s": (levels.get(level) or {}).get("estimated_wait_s"),
            }
            for level in LEVELS
        },
    }


def public_view(aggregate: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The body of GET /v1/queue; raises ModelNotFoundError for a model that is not configured."""
    models: dict[str, Any] = aggregate.get("models") or {}
    if model is not None and model not in models:
        raise unknown_model(model, sorted(models))
    names = sorted(models) if model is None else [model]
    return {
        "object": "queue",
        "age_s": aggregate.get("age_s"),
        "models": {name: public_model(models[name]) for name in names},
    }


class QueueView:
    """Answers GET /v1/queue[?model=M] from a QueueStatusSource."""

    def __init__(self, source: QueueStatusSource) -> None:
        self._source = source

    async def respond(self, ctx: RequestContext) -> ProcessingResponse:
        """The 200 answer; raises ModelNotFoundError (404) or QueueStatusUnavailableError (503)."""
        models = parse_qs(ctx.query).get("model", [])
        name = models[-1].strip() if models else ""
        body = public_view(await self._source.aggregate(), name or None)
        headers = [
            set_header("content-type", CONTENT_TYPE),
            # About a second old already; a cache in between would only make it older.
            set_header("cache-control", "no-store"),
        ]
        if ctx.request_id:
            headers.append(set_header("x-request-id", ctx.request_id))
        return ProcessingResponse(
            immediate_response=ImmediateResponse(
                status=HttpStatus(code=200),  # type: ignore[arg-type]
                headers=HeaderMutation(set_headers=headers),
                body=json.dumps(body, separators=(",", ":")).encode(),
                details="ttsgw_queue_view",
            )
        )
