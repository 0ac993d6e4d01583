"""OpenTelemetry for the processes that emit spans: SDK, Zipkin JSON export, B3, bounded queue.

``setup_tracing`` returns a ``Telemetry``: two tracers over one exporter.

- ``tracer`` samples by the trace id's hash with the shared ratio (the relay's rule), so
  the filter and the workers record full detail for exactly the traces the relay keeps
  by ratio, and pay a non-recording span (a few microseconds) for the rest.
- ``always`` samples everything. It is for the tail: when a request that ``tracer`` did
  not record fails or is slow, the emitter writes its span afterwards with ``rescue``
  (start time, error status, an event naming the cause), and the relay keeps the trace.

Export is a BatchSpanProcessor on its own thread behind a hard bound (``max_queue_size``
spans waiting); over it, and on every failed export, spans are dropped and counted in
``ttsgw_tracing_spans_dropped_total{reason}``. Nothing on the request path ever waits
for the collector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ttsgw_common.telemetry.sampling import keeps
from ttsgw_common.telemetry.zipkin_json import lean_zipkin_exporter

log = logging.getLogger(__name__)

PROPAGATOR = B3MultiFormat()


class SpanCounts(Collector):
    """``ttsgw_tracing_spans_{exported,dropped}_total``; register it on any registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.dropped: dict[str, int] = {"queue_full": 0, "export_failed": 0}

    def add(self, *, exported: int = 0, dropped: int = 0, reason: str = "") -> None:
        with self._lock:
            self.exported += exported
            if dropped:
                self.dropped[reason] = self.dropped.get(reason, 0) + dropped

    def collect(self) -> Iterator[CounterMetricFamily]:
        exported = CounterMetricFamily(
            "ttsgw_tracing_spans_exported", "Spans this process handed to the collector."
        )
        exported.add_metric([], self.exported)
        dropped = CounterMetricFamily(
            "ttsgw_tracing_spans_dropped",
            "Spans this process dropped: queue_full (the bounded queue), export_failed "
            "(collector down or refusing).",
            labels=["reason"],
        )
        with self._lock:
            for reason, n in sorted(self.dropped.items()):
                dropped.add_metric([reason], n)
        yield exported
        yield dropped


class _CountingExporter(SpanExporter):
    """Never raises into the SDK's worker thread; says how each batch went."""

    def __init__(self, inner: SpanExporter, done: _BoundedProcessor) -> None:
        self._inner = inner
        self._done = done
        self._last_warning = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("span export failed, dropping spans (counted): %s", exc)
        self._done.exported(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()


class _BoundedProcessor(SpanProcessor):
    """A BatchSpanProcessor that counts what it cannot take instead of logging each drop."""

    def __init__(
        self,
        exporter: SpanExporter,
        counts: SpanCounts,
        *,
        max_queue_size: int,
        schedule_delay_ms: int,
    ) -> None:
        self._counts = counts
        self._max = max_queue_size
        self._pending = 0
        self._lock = threading.Lock()
        self._inner = BatchSpanProcessor(
            _CountingExporter(exporter, self),
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=min(512, max_queue_size),
        )

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            if self._pending >= self._max:
                full = True
            else:
                full = False
                self._pending += 1
        if full:
            self._counts.add(dropped=1, reason="queue_full")
            return
        self._inner.on_end(span)

    def exported(self, n: int, ok: bool) -> None:
        with self._lock:
            self._pending -= n
        if ok:
            self._counts.add(exported=n)
        else:
            self._counts.add(dropped=n, reason="export_failed")

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


@dataclass
class Telemetry:
    tracer: trace.Tracer
    always: trace.Tracer
    slow_threshold_s: float
    counts: SpanCounts
    providers: tuple[TracerProvider, ...]
    # The ratio ``tracer`` samples by; ``samples`` answers its question without OTel.
    sample_ratio: float = 1.0

    def samples(self, trace_id: str) -> bool:
        """Whether ``tracer`` records this trace (hex id): the relay's and OTel's rule."""
        return keeps(trace_id, self.sample_ratio)

    def extract(self, carrier: Mapping[str, str]) -> Context | None:
        """The B3 context in these headers (or gRPC metadata), None when there is none."""
        ctx = PROPAGATOR.extract(carrier)
        span = trace.get_current_span(ctx)
        return ctx if span.get_span_context().is_valid else None

    def rescue(
        self,
        name: str,
        parent: Context | None,
        start_ns: int,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        error: str | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    ) -> None:
        """Write, after the fact, the span of a request ``tracer`` did not record."""
        span = self.always.start_span(
            name, context=parent, kind=kind, start_time=start_ns, attributes=attributes
        )
        if error is not None:
            mark_error(span, error)
        span.end()

    def force_flush(self, timeout_s: float = 5.0) -> None:
        for provider in self.providers:
            provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        # Both providers share one processor; shutting the first down flushes it.
        self.providers[0].shutdown()


def mark_error(span: trace.Span, cause: str, message: str = "") -> None:
    """Error status plus an event naming the cause (e.g. ``input_too_long``); never input text."""
    span.set_status(Status(StatusCode.ERROR, cause))
    span.add_event("error", {"error.cause": cause, **({"message": message} if message else {})})


def setup_tracing(
    service_name: str,
    zipkin_url: str,
    *,
    sample_ratio: float,
    slow_threshold_s: float,
    max_queue_size: int = 2048,
    # A POST a second, not five: each costs the emitting process (the filter is our
    # bottleneck) an HTTP round trip on a thread that competes for the GIL.
    schedule_delay_ms: int = 1000,
    export_timeout_s: int = 2,
    exporter: SpanExporter | None = None,
    install_global: bool = False,
) -> Telemetry:
    """Two tracers over one bounded exporter. ``install_global`` also makes ``tracer``'s
    provider OpenTelemetry's global one (and B3 the global propagator), so code that
    only uses the OTel API (``trace.get_tracer(...)``) records into it."""
    counts = SpanCounts()
    processor = _BoundedProcessor(
        exporter or lean_zipkin_exporter(zipkin_url, export_timeout_s),
        counts,
        max_queue_size=max_queue_size,
        schedule_delay_ms=schedule_delay_ms,
    )
    resource = Resource.create({SERVICE_NAME: service_name})
    sampled = TracerProvider(sampler=TraceIdRatioBased(sample_ratio), resource=resource)
    everything = TracerProvider(sampler=ALWAYS_ON, resource=resource)
    for provider in (sampled, everything):
        provider.add_span_processor(processor)
    if install_global:
        trace.set_tracer_provider(sampled)
        set_global_textmap(PROPAGATOR)
    return Telemetry(
        tracer=sampled.get_tracer(service_name),
        always=everything.get_tracer(service_name),
        slow_threshold_s=slow_threshold_s,
        counts=counts,
        providers=(sampled, everything),
        sample_ratio=sample_ratio,
    )
