"""The interface of one ext_proc phase's processor; the stream loop dispatches to these."""

from __future__ import annotations

from typing import Protocol

from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.ext_proc.context import RequestContext
from gateway.ext_proc.responses import continue_unchanged


class Processor(Protocol):
    """Handles one phase. May raise RequestRejected; the stream loop turns it into a reply.

    ``may_wait`` marks a processor that can knowingly take longer than Envoy's message
    timeout (a single-flight follower); only those pay for the timer-extension watch.
    """

    may_wait: bool

    async def process(
        self, request: ProcessingRequest, ctx: RequestContext
    ) -> ProcessingResponse: ...


class PassthroughProcessor:
    """Continues unchanged. The seam for response headers/body (cache fill, x-tts-cache)."""

    may_wait = False

    async def process(self, request: ProcessingRequest, ctx: RequestContext) -> ProcessingResponse:
        return continue_unchanged(request)
