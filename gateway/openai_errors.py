"""The one place a gateway rejection becomes OpenAI's error body: ``{"error": {...}}``.

The official ``openai`` SDK reads ``error.message``/``type``/``param``/``code`` from this
shape, so every rejection the filter makes, whatever its phase, goes through here.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import RequestRejected

CONTENT_TYPE = "application/json"


def error_payload(exc: RequestRejected) -> dict[str, Any]:
    return {
        "error": {
            "message": exc.message,
            "type": exc.type,
            "param": exc.param,
            "code": exc.code,
        }
    }


def error_body(exc: RequestRejected) -> bytes:
    return json.dumps(error_payload(exc), separators=(",", ":")).encode()
