"""Stage spans of scheduled requests, recorded after the fact from measured times.

Only the OpenTelemetry API is used here: with no SDK installed (tracing off) every call
is a no-op. A batched stage is one engine call for many requests, so each request gets
its own span over the same interval, tagged with the batch size.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from .ticket import Ticket

_tracer = trace.get_tracer("tts_backends")


def now_ns() -> int:
    return time.time_ns()


def record_stage(
    ticket: Ticket, name: str, start_ns: int, end_ns: int, **attributes: object
) -> None:
    attrs = {"tts.priority": ticket.level, **{f"tts.{k}": v for k, v in attributes.items()}}
    span = _tracer.start_span(
        name,
        context=ticket.trace_context,
        start_time=start_ns,
        attributes=attrs,  # type: ignore[arg-type]
    )
    span.end(end_time=end_ns)
