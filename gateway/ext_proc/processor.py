"""The interface of an endpoint's processor, the request head it is chosen by, and its outcome.

As in envoyproxy/ai-gateway, one processor per gateway endpoint (speech, voices, voice
registry, queue view, pass-through) is picked once per stream from the request head,
with one method per ext_proc phase and state of its own. The stream loop (stream.py)
calls the method of each message's phase; a phase a processor does not handle
continues unchanged (``BaseProcessor``'s defaults).

A processor may raise RequestRejected (the stream loop answers its 4xx); anything else
it raises is a bug (stream.py says what the client gets then).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    HeadersResponse,
    HttpBody,
    HttpHeaders,
    ProcessingResponse,
)

from gateway.ext_proc.admission import Admission
from gateway.ext_proc.headers import header_dict, reserved_headers
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.headers import CLASS_HEADER, PRIORITY_HEADER


class Outcome(enum.Enum):
    """What the filter did with a request; the label of ``ttsgw_filter_requests_total``."""

    ROUTED = "routed"
    REJECTED_4XX = "rejected_4xx"
    PASSTHROUGH = "passthrough"
    # A filter bug in a response phase: the response went on unchanged.
    FAILED_OPEN = "failed_open"
    # A filter bug in a request phase: the client got a 500 (stream.py says why).
    FAILED_5XX = "failed_5xx"


@dataclass(frozen=True)
class RequestHead:
    """The request headers as read once, at the first message of a stream."""

    method: str = ""
    path: str = ""
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # The client's own x-tts-* headers, removed before Envoy routes.
    reserved: tuple[str, ...] = ()

    @classmethod
    def parse(cls, message: HttpHeaders) -> RequestHead:
        headers = header_dict(message.headers)
        path, _, query = headers.get(":path", "").partition("?")
        return cls(
            method=headers.get(":method", "").upper(),
            path=path,
            query=query,
            headers=headers,
            reserved=tuple(reserved_headers(headers)),
        )

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")


class Processor(Protocol):
    """One request on one endpoint, phase by phase; a stream owns exactly one."""

    # What the stream loop counts and logs: the decision, and the labels it is counted by
    # (only a model the config knows; the key's class, None when not admitted).
    outcome: Outcome | None
    model: str | None
    priority_class: str | None
    request_id: str

    def may_wait(self, phase: str) -> bool:
        """Whether this phase can knowingly outlast Envoy's message timer (the loop then
        pays for the timer-extension watch)."""
        ...

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse: ...

    async def request_body(self, message: HttpBody) -> ProcessingResponse: ...

    async def response_headers(self, message: HttpHeaders) -> ProcessingResponse: ...

    async def response_body(self, message: HttpBody) -> ProcessingResponse: ...

    def close(self) -> None:
        """The stream is over or this processor failed; safe to call more than once."""
        ...


class BaseProcessor:
    """The per-stream state every processor has, and do-nothing answers for every phase."""

    def __init__(self, head: RequestHead, config: GatewayConfig | None) -> None:
        self.head = head
        # The one snapshot of the gateway config this stream uses in every phase.
        self.config = config
        self.request_id = head.request_id
        self.outcome: Outcome | None = None
        self.model: str | None = None
        self.priority_class: str | None = None
        # The priority level resolved from the API key (high | default | low).
        self.priority = "default"

    def decide(self, outcome: Outcome) -> None:
        """Record the first decision only; a later phase cannot rewrite history."""
        if self.outcome is None:
            self.outcome = outcome

    def admit(self, admission: Admission, *, stamp: bool) -> dict[str, str]:
        """Admit an API call (raises 401/429); the headers that carry its class on, if
        ``stamp`` (only requests Envoy routes to a backend: a route-cache clear is not free)."""
        if self.config is None or not self.head.path.startswith("/v1/"):
            return {}
        admitted = admission.admit(self.head.headers.get("authorization"), self.config.auth)
        self.priority, self.priority_class = admitted.level, admitted.priority_class
        if not stamp:
            return {}
        return {PRIORITY_HEADER: admitted.level, CLASS_HEADER: admitted.priority_class}

    def may_wait(self, phase: str) -> bool:
        return False

    async def request_headers(self, message: HttpHeaders) -> ProcessingResponse:
        return ProcessingResponse(request_headers=HeadersResponse())

    async def request_body(self, message: HttpBody) -> ProcessingResponse:
        return ProcessingResponse(request_body=BodyResponse())

    async def response_headers(self, message: HttpHeaders) -> ProcessingResponse:
        return ProcessingResponse(response_headers=HeadersResponse())

    async def response_body(self, message: HttpBody) -> ProcessingResponse:
        return ProcessingResponse(response_body=BodyResponse())

    def close(self) -> None:
        return None
