"""The filter's part of a request's trace: a span per step, a phase span when a phase goes wrong.

Envoy's ext_proc client span is the parent: Envoy injects its B3 context into the gRPC
metadata of the ``Process`` stream (verified against Envoy 1.40 in
tests/e2e/test_tracing.py); the request headers Envoy forwards carry the same context as
a fallback. Without a context (tracing off in Envoy) the filter records nothing.

The sampling decision is made once per stream, from the trace id, with the relay's hash.
In the ratio, the steps (``validate``, ``cache_lookup``, ``single_flight_wait``) are
recorded as children of Envoy's span. A phase itself gets a span only when it failed or
was slow, written afterwards (``Telemetry.rescue``), in the ratio or not: a span per
phase on every sampled request doubled the spans the filter, our bottleneck, records,
and said nothing Envoy's ext_proc span does not (docs/decisions.md). A stream outside the
ratio never touches OpenTelemetry unless a phase fails or is slow: it only keeps the
phase's start time, attributes and error.

Spans say what happened, never what was said: model, priority, cache status, text length
and the rejection's code, never the input text, audio bytes or API keys.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry import context, trace
from opentelemetry.context import Context

from ttsgw_common.telemetry.emitter import Telemetry

_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass
class StreamTrace:
    """One ext_proc stream's tracing state; None when tracing is off or Envoy sent no context."""

    telemetry: Telemetry
    # The B3 headers (or gRPC metadata) the context comes from; parsed by OTel only when
    # a span is recorded.
    carrier: Mapping[str, str]
    trace_id: str
    sampled: bool
    attributes: dict[str, str | int] = field(default_factory=dict)
    _parent: Context | None = None

    @classmethod
    def start(cls, telemetry: Telemetry | None, carrier: Mapping[str, str]) -> StreamTrace | None:
        if telemetry is None:
            return None
        trace_id = _b3_trace_id(carrier)
        if trace_id is not None and not telemetry.samples(trace_id):
            return cls(telemetry, carrier, trace_id, sampled=False)
        # In the ratio (or B3 in a form only OTel's propagator reads, e.g. the single `b3`
        # header): the parent context now, so a recorded span is never a stray root.
        parent = telemetry.extract(carrier)
        if parent is None:
            return None
        trace_id = f"{trace.get_current_span(parent).get_span_context().trace_id:032x}"
        stream = cls(telemetry, carrier, trace_id, sampled=telemetry.samples(trace_id))
        stream._parent = parent
        return stream

    @property
    def parent(self) -> Context | None:
        if self._parent is None:
            self._parent = self.telemetry.extract(self.carrier)
        return self._parent

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseSpan]:
        """One phase's handling: its steps' parent is current, its span written if needed."""
        started_ns = time.time_ns()
        result = PhaseSpan()
        # In the ratio, Envoy's span is current so the steps' spans hang off it directly.
        parent = self.parent if self.sampled else None
        token = context.attach(parent) if parent is not None else None
        try:
            yield result
        finally:
            if token is not None:
                context.detach(token)
        self._rescue_if_needed(f"ext_proc {name}", started_ns, result)

    def _rescue_if_needed(self, name: str, started_ns: int, result: PhaseSpan) -> None:
        # Written afterwards, only when the tail sampler must keep it (and to say why).
        slow = (time.time_ns() - started_ns) / 1e9 > self.telemetry.slow_threshold_s
        if result.error is None and not slow:
            return
        parent = self.parent
        if parent is None:
            return
        self.telemetry.rescue(
            name,
            parent,
            started_ns,
            attributes={**self.attributes, **result.attributes},
            error=result.error,
            kind=trace.SpanKind.SERVER,
        )

    def child(self, name: str) -> contextlib.AbstractContextManager[trace.Span | None]:
        return self._recorded_child(name) if self.sampled else contextlib.nullcontext()

    @contextlib.contextmanager
    def _recorded_child(self, name: str) -> Iterator[trace.Span]:
        # The exception's message could quote the request; the phase span names its code.
        with self.telemetry.tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        ) as span:
            yield span
            # The stream's attributes so far (model, priority, text length): there is no
            # phase span to carry them on a request that went well.
            span.set_attributes(self.attributes)


@dataclass
class PhaseSpan:
    """A phase's outcome, kept to write its span afterwards when it failed or was slow."""

    error: str | None = None
    attributes: dict[str, str | int] = field(default_factory=dict)

    def fail(self, cause: str, status: int) -> None:
        self.error = cause
        if status:
            self.attributes["http.status_code"] = status


def child_span(
    stream: StreamTrace | None, name: str
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A step's span (child of the current one, or of Envoy's), or nothing outside the ratio."""
    if stream is None:
        return contextlib.nullcontext()
    return stream.child(name)


def annotate(stream: StreamTrace | None, **attributes: str | int) -> None:
    """Attributes for this stream's spans: the steps' ending after this, and any phase span."""
    if stream is None:
        return
    stream.attributes.update(attributes)


def _b3_trace_id(carrier: Mapping[str, str]) -> str | None:
    """``x-b3-traceid`` as 32 lowercase hex digits, when it and ``x-b3-spanid`` are valid."""
    trace_id = carrier.get("x-b3-traceid")
    span_id = carrier.get("x-b3-spanid")
    if trace_id is None or span_id is None or "b3" in carrier:
        return None
    if len(trace_id) not in (16, 32) or len(span_id) != 16 or not _HEX.issuperset(trace_id):
        return None
    if not _HEX.issuperset(span_id) or int(trace_id, 16) == 0:
        return None
    return trace_id.lower().rjust(32, "0")
