"""The request id and trace id of the request being served, for log lines and error bodies.

Set by whoever opens the request's span (the worker's ASGI middleware, the filter's stream
loop); read by ``TraceLogFilter`` so every log line of that request carries both ids.
"""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")

# A text format that shows both ids; JSON formatters read the record attributes instead.
LOG_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s trace_id=%(trace_id)s]: "
    "%(message)s"
)


class TraceLogFilter(logging.Filter):
    """Adds ``request_id`` and ``trace_id`` to every record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.trace_id = trace_id_var.get()
        return True


def ids() -> dict[str, str]:
    """The current ids, for an error body; empty keys are left out."""
    found = {"request_id": request_id_var.get(), "trace_id": trace_id_var.get()}
    return {k: v for k, v in found.items() if v}
