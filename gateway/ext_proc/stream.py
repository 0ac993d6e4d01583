"""The ext_proc stream loop: one stream per HTTP request, each message to the stream's processor.

It owns nothing but the loop: it takes one gateway-config snapshot per stream, has the
router pick the processor once at the request headers, starts the trace once, calls the
processor's method for each message's phase, extends Envoy's message timer for a phase
that waits, counts and times, and maps errors to the wire:

- RequestRejected (anywhere in what a processor raised) is the client's: its 4xx.
- Anything else is a filter bug. In a request phase the client gets an OpenAI-shaped
  500: continuing unchanged would skip admission and the strip of the client's x-tts-*
  headers, or route a marked speech request to the 404. In a response phase the
  response goes on unchanged (fail open): the backend's answer is good, only the cache
  fill is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import ExternalProcessorServicer
from google.protobuf.duration_pb2 import Duration

from gateway.config_client import GatewayConfigSource
from gateway.errors import RequestRejected
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.processor import Outcome, Processor, RequestHead
from gateway.ext_proc.responses import continue_unchanged, internal_error, reject
from gateway.ext_proc.tracing import PhaseSpan, StreamTrace
from ttsgw_common.telemetry.emitter import Telemetry
from ttsgw_contract.gateway_config import FilterTimeouts, GatewayConfig

log = logging.getLogger(__name__)

# Picks a stream's processor from its request head, config snapshot and trace.
Select = Callable[[RequestHead, GatewayConfig | None, StreamTrace | None], Processor]

_RESPONSE_PHASES = frozenset({"response_headers", "response_body", "response_trailers"})
# The keys that mean Envoy put a B3 context into the gRPC metadata (B3 single or multi).
_B3_KEYS = ("b3", "x-b3-traceid")
# Before the first config: the translator's defaults.
_DEFAULT_TIMEOUTS = FilterTimeouts()


class ExtProcService(ExternalProcessorServicer):
    def __init__(
        self,
        config_source: GatewayConfigSource,
        select: Select,
        metrics: FilterMetrics,
        *,
        telemetry: Telemetry | None = None,
        extend_after_s: float | None = None,
        extended_timeout_s: float | None = None,
    ) -> None:
        """``extend_after_s``/``extended_timeout_s`` override the config's timeouts (tests)."""
        self._config_source = config_source
        self._select = select
        self._metrics = metrics
        self._telemetry = telemetry
        self._extend_after_s = extend_after_s
        self._extended_timeout_s = extended_timeout_s

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ProcessingResponse]:
        # One snapshot for every phase: a config swap mid-request cannot split it in two.
        config = self._config_source.current()
        timeouts = config.timeouts if config is not None else _DEFAULT_TIMEOUTS
        extend_after_s = self._extend_after_s
        if extend_after_s is None:
            extend_after_s = timeouts.extend_after_s
        processor: Processor | None = None
        trace: StreamTrace | None = None
        recorded = False
        try:
            async for request in request_iterator:
                phase = request.WhichOneof("request")
                if phase is None:
                    # Nothing Envoy sends; there is no phase to answer for.
                    log.warning("ignoring a ProcessingRequest without a phase")
                    continue
                started = time.perf_counter()
                if processor is None:
                    head = (
                        RequestHead.parse(request.request_headers)
                        if phase == "request_headers"
                        else RequestHead()
                    )
                    trace = self._start_trace(context, head)
                    try:
                        processor = self._select(head, config, trace)
                    except Exception:
                        log.exception("gateway filter failed to pick a processor for %s", phase)
                        self._metrics.record(Outcome.FAILED_5XX)
                        trace_id = trace.trace_id if trace is not None else ""
                        yield internal_error(request_id=head.request_id, trace_id=trace_id)
                        return
                if not processor.may_wait(phase):
                    response = await self._handle(phase, request, processor, trace)
                else:
                    handling = asyncio.ensure_future(self._handle(phase, request, processor, trace))
                    try:
                        done, _ = await asyncio.wait({handling}, timeout=extend_after_s)
                        if not done:
                            # Still working (a single-flight follower waiting for the
                            # leader's synthesis): ask Envoy to extend this message's timer,
                            # up to the translator's max_message_timeout, instead of dropping
                            # our answer and sending the request on unfiltered.
                            yield ProcessingResponse(
                                override_message_timeout=self._extended(timeouts)
                            )
                        response = await handling
                    finally:
                        handling.cancel()
                self._metrics.duration.labels(phase).observe(time.perf_counter() - started)
                if processor.outcome is not None and not recorded:
                    self._metrics.record(
                        processor.outcome, processor.model, processor.priority_class
                    )
                    recorded = True
                yield response
                if response.HasField("immediate_response"):
                    # Envoy answers the client and sends nothing more on this stream.
                    return
        finally:
            if processor is not None:
                processor.close()

    def _extended(self, timeouts: FilterTimeouts) -> Duration:
        seconds = self._extended_timeout_s
        if seconds is None:
            seconds = timeouts.extended_timeout_s
        extended = Duration()
        extended.FromMilliseconds(round(seconds * 1000))
        return extended

    def _start_trace(
        self, context: grpc.aio.ServicerContext, head: RequestHead
    ) -> StreamTrace | None:
        if self._telemetry is None:
            return None
        # Envoy's ext_proc span rides the gRPC metadata; without it, the forwarded
        # request headers may still carry the request's context.
        metadata = _metadata(context)
        carrier = metadata if any(k in metadata for k in _B3_KEYS) else head.headers
        return StreamTrace.start(self._telemetry, carrier)

    async def _handle(
        self,
        phase: str,
        request: ProcessingRequest,
        processor: Processor,
        trace: StreamTrace | None,
    ) -> ProcessingResponse:
        if trace is None:
            return await self._dispatch(phase, request, processor, trace, None)
        with trace.phase(phase) as span:
            return await self._dispatch(phase, request, processor, trace, span)

    async def _dispatch(
        self,
        phase: str,
        request: ProcessingRequest,
        processor: Processor,
        trace: StreamTrace | None,
        span: PhaseSpan | None,
    ) -> ProcessingResponse:
        trace_id = trace.trace_id if trace is not None else ""
        try:
            return await _call(processor, phase, request)
        except Exception as exc:
            rejection = client_error_in(exc)
            if rejection is not None:
                _set_outcome(processor, Outcome.REJECTED_4XX)
                if span is not None:
                    span.fail(rejection.code or rejection.type, rejection.status)
                return reject(rejection, request_id=processor.request_id, trace_id=trace_id)
            log.exception(
                "gateway filter failed in %s (processor=%s request_id=%s trace_id=%s)",
                phase,
                type(processor).__name__,
                processor.request_id,
                trace_id,
            )
            processor.close()
            if phase in _RESPONSE_PHASES:
                if span is not None:
                    span.fail("filter_failed_open", 0)
                _set_outcome(processor, Outcome.FAILED_OPEN)
                return continue_unchanged(request)
            if span is not None:
                span.fail("filter_error", 500)
            _set_outcome(processor, Outcome.FAILED_5XX)
            return internal_error(request_id=processor.request_id, trace_id=trace_id)


async def _call(processor: Processor, phase: str, request: ProcessingRequest) -> ProcessingResponse:
    if phase == "request_headers":
        return await processor.request_headers(request.request_headers)
    if phase == "request_body":
        return await processor.request_body(request.request_body)
    if phase == "response_headers":
        return await processor.response_headers(request.response_headers)
    if phase == "response_body":
        return await processor.response_body(request.response_body)
    # Trailers: no processor asks for them (modes.py).
    return continue_unchanged(request)


def client_error_in(exc: BaseException) -> RequestRejected | None:
    """The client's error in what a processor raised: itself, a cause, or one of a group.

    A rejection wrapped by a helper (``raise ... from``, an ExceptionGroup from a task
    group) is still the client's mistake, never a 5xx.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RequestRejected):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def _set_outcome(processor: Processor, outcome: Outcome) -> None:
    # The first decision stands: a request routed in its body phase stays routed.
    if processor.outcome is None:
        processor.outcome = outcome


def _metadata(context: grpc.aio.ServicerContext) -> Mapping[str, str]:
    metadata = context.invocation_metadata() or ()
    return {key: value for key, value in metadata if isinstance(value, str)}
