"""Per-request state shared by the phases of one ext_proc stream, and its outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"


class Endpoint(enum.Enum):
    """The gateway API calls the filter treats specially; everything else passes through."""

    SPEECH = "speech"
    VOICES = "voices"
    OTHER = "other"


class Outcome(enum.Enum):
    """What the filter did with a request; the label of ``ttsgw_filter_requests_total``."""

    ROUTED = "routed"
    REJECTED_4XX = "rejected_4xx"
    PASSTHROUGH = "passthrough"
    FAILED_OPEN = "failed_open"


@dataclass
class RequestContext:
    """One HTTP request as the filter sees it; a stream owns exactly one."""

    method: str = ""
    path: str = ""
    query: str = ""
    endpoint: Endpoint = Endpoint.OTHER
    model: str | None = None
    # The client's own x-tts-* headers, removed before Envoy routes.
    stripped_headers: list[str] = field(default_factory=list)
    outcome: Outcome | None = None

    def decide(self, outcome: Outcome) -> None:
        """Record the first decision only; a later phase cannot rewrite history."""
        if self.outcome is None:
            self.outcome = outcome


def classify(method: str, path: str) -> Endpoint:
    if path == SPEECH_PATH and method == "POST":
        return Endpoint.SPEECH
    if path == VOICES_PATH and method == "GET":
        return Endpoint.VOICES
    return Endpoint.OTHER
