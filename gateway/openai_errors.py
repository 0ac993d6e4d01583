"""The one place a gateway rejection becomes OpenAI's error body: ``{"error": {...}}``.

The official ``openai`` SDK reads ``error.message``/``type``/``param``/``code`` from this
shape, so every rejection the filter makes, whatever its phase, goes through here.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import RequestRejected

CONTENT_TYPE = "application/json"


def error_payload(
    exc: RequestRejected, *, request_id: str = "", trace_id: str = ""
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": exc.message,
        "type": exc.type,
        "param": exc.param,
        "code": exc.code,
    }
    # Envoy's own local replies carry the same two keys (control_plane/translator/local_replies.py).
    if request_id:
        error["request_id"] = request_id
    if trace_id:
        error["trace_id"] = trace_id
    return {"error": error}


def error_body(exc: RequestRejected, *, request_id: str = "", trace_id: str = "") -> bytes:
    payload = error_payload(exc, request_id=request_id, trace_id=trace_id)
    return json.dumps(payload, separators=(",", ":")).encode()


# A filter bug answered in a request phase (gateway/ext_proc/stream.py): never a client's fault.
INTERNAL_ERROR_MESSAGE = (
    "The gateway filter failed on this request; this is a bug in the gateway, not in the "
    "request. Report it with the request_id."
)


def internal_error_body(*, request_id: str = "", trace_id: str = "") -> bytes:
    error: dict[str, Any] = {
        "message": INTERNAL_ERROR_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": "filter_error",
    }
    if request_id:
        error["request_id"] = request_id
    if trace_id:
        error["trace_id"] = trace_id
    return json.dumps({"error": error}, separators=(",", ":")).encode()
