"""The filter's part of a request's trace: one span per ext_proc phase, children per step.

Envoy's ext_proc client span is the parent: Envoy injects its B3 context into the gRPC
metadata of the ``Process`` stream (verified against Envoy 1.40 in
tests/e2e/test_tracing.py); the request headers Envoy forwards carry the same context as
a fallback. Without a context (tracing off in Envoy) the filter records nothing.

Spans say what happened, never what was said: model, priority, cache status, text length
and the rejection's code, never the input text, audio bytes or API keys.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context

from ttsgw.telemetry.emitter import Telemetry, mark_error


@dataclass
class StreamTrace:
    """One ext_proc stream's tracing state; None on a RequestContext when tracing is off."""

    telemetry: Telemetry
    parent: Context
    trace_id: str
    attributes: dict[str, str | int] = field(default_factory=dict)

    @classmethod
    def start(cls, telemetry: Telemetry | None, carrier: Mapping[str, str]) -> StreamTrace | None:
        if telemetry is None:
            return None
        parent = telemetry.extract(carrier)
        if parent is None:
            return None
        trace_id = f"{trace.get_current_span(parent).get_span_context().trace_id:032x}"
        return cls(telemetry, parent, trace_id)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseSpan]:
        """The span of one phase's handling; current while the processor runs."""
        started_ns = time.time_ns()
        tracer = self.telemetry.tracer
        with tracer.start_as_current_span(
            f"ext_proc {name}", context=self.parent, kind=trace.SpanKind.SERVER
        ) as span:
            result = PhaseSpan(span)
            yield result
            span.set_attributes(self.attributes)
        if span.is_recording():
            return
        # Not in the ratio: write the span afterwards if the tail sampler must keep it.
        slow = (time.time_ns() - started_ns) / 1e9 > self.telemetry.slow_threshold_s
        if result.error is not None or slow:
            self.telemetry.rescue(
                f"ext_proc {name}",
                self.parent,
                started_ns,
                attributes={**self.attributes, **result.attributes},
                error=result.error,
                kind=trace.SpanKind.SERVER,
            )

    def child(self, name: str) -> contextlib.AbstractContextManager[trace.Span]:
        # The exception's message could quote the request; the phase span names its code.
        return self.telemetry.tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        )


@dataclass
class PhaseSpan:
    span: trace.Span
    error: str | None = None
    attributes: dict[str, str | int] = field(default_factory=dict)

    def fail(self, cause: str, status: int) -> None:
        self.error = cause
        if status:
            self.attributes["http.status_code"] = status
            self.span.set_attribute("http.status_code", status)
        mark_error(self.span, cause)


def child_span(
    stream: StreamTrace | None, name: str
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A child of the current phase span, or nothing when the request is not traced."""
    if stream is None:
        return contextlib.nullcontext()
    return stream.child(name)


def annotate(stream: StreamTrace | None, **attributes: str | int) -> None:
    """Attributes for this stream's phase spans (kept for the spans written afterwards too)."""
    if stream is None:
        return
    stream.attributes.update(attributes)
    trace.get_current_span().set_attributes(attributes)
