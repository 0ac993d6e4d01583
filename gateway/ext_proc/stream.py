"""The ext_proc stream loop: one stream per HTTP request, each message to its phase's processor.

It owns nothing but the dispatch: per-request state lives in RequestContext, decisions in
the processors, the wire shape of rejections in responses/openai_errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import ExternalProcessorServicer

from gateway.errors import RequestRejected
from gateway.ext_proc.context import Outcome, RequestContext
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.processor import Processor
from gateway.ext_proc.responses import continue_unchanged, reject

log = logging.getLogger(__name__)


class ExtProcService(ExternalProcessorServicer):
    def __init__(self, processors: Mapping[str, Processor], metrics: FilterMetrics) -> None:
        self._processors = processors
        self._metrics = metrics

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ProcessingResponse]:
        ctx = RequestContext()
        recorded = False
        try:
            async for request in request_iterator:
                phase = request.WhichOneof("request")
                if phase is None:
                    # Nothing Envoy sends; there is no phase to answer for.
                    log.warning("ignoring a ProcessingRequest without a phase")
                    continue
                started = time.perf_counter()
                response = await self._handle(phase, request, ctx)
                self._metrics.duration.labels(phase).observe(time.perf_counter() - started)
                if ctx.outcome is not None and not recorded:
                    self._metrics.record(ctx.outcome)
                    recorded = True
                yield response
                if response.HasField("immediate_response"):
                    # Envoy answers the client and sends nothing more on this stream.
                    return
        finally:
            # However the stream ends (client gone, upstream reset, filter bug), a cache
            # fill this request leads is over: its followers must not wait in vain.
            if ctx.cache is not None:
                ctx.cache.abandon()

    async def _handle(
        self, phase: str, request: ProcessingRequest, ctx: RequestContext
    ) -> ProcessingResponse:
        processor = self._processors.get(phase)
        try:
            if processor is None:
                return continue_unchanged(request)
            return await processor.process(request, ctx)
        except RequestRejected as exc:
            ctx.decide(Outcome.REJECTED_4XX)
            return reject(exc)
        except Exception:
            # Fail open: a bug in the filter must cost at most the filter's features,
            # never the request.
            log.exception("gateway filter failed in %s for %s %s", phase, ctx.method, ctx.path)
            ctx.decide(Outcome.FAILED_OPEN)
            return continue_unchanged(request)
