"""The ext_proc stream loop: one stream per HTTP request, each message to its phase's processor.

It owns nothing but the dispatch: per-request state lives in RequestContext, decisions in
the processors, the wire shape of rejections in responses/openai_errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import ExternalProcessorServicer
from google.protobuf.duration_pb2 import Duration

from gateway.errors import RequestRejected
from gateway.ext_proc.context import Outcome, RequestContext
from gateway.ext_proc.headers import header_dict
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.processor import Processor
from gateway.ext_proc.responses import continue_unchanged, reject
from gateway.ext_proc.tracing import PhaseSpan, StreamTrace
from ttsgw_common.telemetry.emitter import Telemetry

log = logging.getLogger(__name__)


# Envoy's message_timeout is 500 ms (the translator's default); extend well before it.
EXTEND_AFTER_S = 0.25


class ExtProcService(ExternalProcessorServicer):
    def __init__(
        self,
        processors: Mapping[str, Processor],
        metrics: FilterMetrics,
        *,
        extend_after_s: float = EXTEND_AFTER_S,
        extended_timeout_s: float = 60.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._processors = processors
        self._metrics = metrics
        self._extend_after_s = extend_after_s
        self._extended = Duration()
        self._extended.FromMilliseconds(round(extended_timeout_s * 1000))
        self._telemetry = telemetry

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ProcessingResponse]:
        ctx = RequestContext()
        if self._telemetry is not None:
            ctx.trace = StreamTrace.start(self._telemetry, _metadata(context))
        recorded = False
        try:
            async for request in request_iterator:
                phase = request.WhichOneof("request")
                if phase is None:
                    # Nothing Envoy sends; there is no phase to answer for.
                    log.warning("ignoring a ProcessingRequest without a phase")
                    continue
                started = time.perf_counter()
                processor = self._processors.get(phase)
                if processor is None or not processor.may_wait:
                    response = await self._handle(phase, request, ctx)
                else:
                    handling = asyncio.ensure_future(self._handle(phase, request, ctx))
                    try:
                        done, _ = await asyncio.wait({handling}, timeout=self._extend_after_s)
                        if not done:
                            # Still working (a single-flight follower waiting for the
                            # leader's synthesis): ask Envoy to extend this message's timer,
                            # up to the translator's max_message_timeout, instead of dropping
                            # our answer and sending the request on unfiltered.
                            yield ProcessingResponse(override_message_timeout=self._extended)
                        response = await handling
                    finally:
                        handling.cancel()
                self._metrics.duration.labels(phase).observe(time.perf_counter() - started)
                if ctx.outcome is not None and not recorded:
                    self._metrics.record(ctx.outcome, ctx.model, ctx.priority_class)
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
        if ctx.trace is None and self._telemetry is not None and phase == "request_headers":
            # No context in the gRPC metadata: the forwarded request headers may have one.
            ctx.trace = StreamTrace.start(
                self._telemetry, header_dict(request.request_headers.headers)
            )
        if ctx.trace is None:
            return await self._dispatch(phase, request, ctx, None)
        with ctx.trace.phase(phase) as span:
            return await self._dispatch(phase, request, ctx, span)

    async def _dispatch(
        self, phase: str, request: ProcessingRequest, ctx: RequestContext, span: PhaseSpan | None
    ) -> ProcessingResponse:
        processor = self._processors.get(phase)
        try:
            if processor is None:
                return continue_unchanged(request)
            return await processor.process(request, ctx)
        except RequestRejected as exc:
            ctx.decide(Outcome.REJECTED_4XX)
            if span is not None:
                span.fail(exc.code or exc.type, exc.status)
            return reject(exc, request_id=ctx.request_id, trace_id=ctx.trace_id)
        except Exception:
            # Fail open: a bug in the filter must cost at most the filter's features,
            # never the request.
            log.exception(
                "gateway filter failed in %s for %s %s (request_id=%s trace_id=%s)",
                phase,
                ctx.method,
                ctx.path,
                ctx.request_id,
                ctx.trace_id,
            )
            if span is not None:
                span.fail("filter_failed_open", 0)
            ctx.decide(Outcome.FAILED_OPEN)
            return continue_unchanged(request)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    metadata = context.invocation_metadata() or ()
    return {key: value for key, value in metadata if isinstance(value, str)}
