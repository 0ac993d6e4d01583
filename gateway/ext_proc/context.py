"""Per-request state shared by the phases of one ext_proc stream, and its outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.cache.single_flight import Flight
from ttsgw_contract.cache import Outcome as CacheOutcome

if TYPE_CHECKING:
    from gateway.ext_proc.tracing import StreamTrace

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"
# The voice registry: POST/GET /v1/voices, GET/DELETE /v1/voices/{id}.
VOICE_REGISTRY_PATH = "/v1/voices"
# How busy each model is; the filter answers it itself (queue_view.py).
QUEUE_PATH = "/v1/queue"


class Endpoint(enum.Enum):
    """The gateway API calls the filter treats specially; everything else passes through."""

    SPEECH = "speech"
    VOICES = "voices"
    VOICE_REGISTRY = "voice_registry"
    QUEUE = "queue"
    OTHER = "other"


class Outcome(enum.Enum):
    """What the filter did with a request; the label of ``ttsgw_filter_requests_total``."""

    ROUTED = "routed"
    REJECTED_4XX = "rejected_4xx"
    PASSTHROUGH = "passthrough"
    FAILED_OPEN = "failed_open"


@dataclass
class CacheState:
    """The response cache's part of one request: its outcome and, for a leader, the fill."""

    outcome: CacheOutcome
    model: str = ""
    key: str | None = None
    ttl_s: int = 0
    max_entry_bytes: int = 0
    # Set only on the leader of a single-flight; it must be finished whatever happens.
    flight: Flight | None = None
    content_type: str = ""
    backend: str = ""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def abandon(self) -> None:
        """Followers of an unfinished fill go to the backend; safe to call twice."""
        if self.flight is not None:
            self.flight.finish(None)
            self.flight = None
        self.chunks = []


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
    request_id: str = ""
    cache: CacheState | None = None
    # The priority level resolved from the API key (high | default | low).
    priority: str = "default"
    # This request's part of its trace; None when tracing is off or Envoy sent no context.
    trace: StreamTrace | None = None

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id if self.trace is not None else ""

    # The priority class the API key maps to (a config name, or "anonymous"); None when
    # the request was not admitted (no config yet, or not an API path).
    priority_class: str | None = None

    def decide(self, outcome: Outcome) -> None:
        """Record the first decision only; a later phase cannot rewrite history."""
        if self.outcome is None:
            self.outcome = outcome


def classify(method: str, path: str) -> Endpoint:
    if path == SPEECH_PATH and method == "POST":
        return Endpoint.SPEECH
    if path == VOICES_PATH and method == "GET":
        return Endpoint.VOICES
    if path == QUEUE_PATH and method == "GET":
        return Endpoint.QUEUE
    if path == VOICE_REGISTRY_PATH or path.startswith(VOICE_REGISTRY_PATH + "/"):
        return Endpoint.VOICE_REGISTRY
    return Endpoint.OTHER
