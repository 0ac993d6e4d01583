"""The worker's tracing: OTel SDK setup, the server span per request, ids for the logs.

The request path itself only uses the OpenTelemetry API (``trace.get_tracer("tts_backends")``
with stage spans ``queue_wait``, ``text_frontend``, ``generate_tokens``, ``tokens_to_mel``,
``vocoder``, ``encode``); they become children of the span ``TracingMiddleware`` opens, whose
parent is Envoy's upstream span (B3 headers). Without a Zipkin URL nothing is installed and
those API calls are no-ops.

Sampling follows ``ttsgw_common.telemetry``: full detail for the traces the shared ratio keeps;
for the rest, a failed (>= 400) or slow request still gets its server span, written after
the fact with the error's code, so the relay can keep the trace. Spans carry sizes and
codes, never the input text, audio bytes or API keys.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ttsgw_common.telemetry.emitter import PROPAGATOR, Telemetry, mark_error, setup_tracing
from ttsgw_common.telemetry.log_context import (
    LOG_FORMAT,
    TraceLogFilter,
    request_id_var,
    trace_id_var,
)
from ttsgw_common.telemetry.settings import TracingSettings

__all__ = [
    "LOG_FORMAT",
    "TraceLogFilter",
    "TracingMiddleware",
    "install_log_ids",
    "setup_worker_tracing",
]

# Enough of an error body to read its OpenAI-shaped ``error.code``.
_ERROR_BODY_LIMIT = 16 * 1024


def setup_worker_tracing(
    service_name: str,
    zipkin_url: str | None,
    *,
    settings: TracingSettings | None = None,
) -> Telemetry | None:
    """Install the SDK (global provider, B3 propagator) exporting to ``zipkin_url``.

    None when ``zipkin_url`` is None: nothing is installed and the API stays a no-op.
    The ratio and slow threshold come from ``TTSGW_TRACING_*`` unless ``settings`` is given.
    """
    if not zipkin_url:
        return None
    settings = settings or TracingSettings()
    return setup_tracing(
        service_name,
        zipkin_url,
        sample_ratio=settings.sample_ratio,
        slow_threshold_s=settings.slow_threshold_s,
        install_global=True,
    )


def install_log_ids(logger: logging.Logger | None = None) -> None:
    """Every handler of ``logger`` (root by default) adds request_id/trace_id to records."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, TraceLogFilter) for f in handler.filters):
            handler.addFilter(TraceLogFilter())


class TracingMiddleware:
    """Opens the worker's server span for each API call (``/v1/...``) and sets the log ids."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry | None = None) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id_token = request_id_var.set(headers.get("x-request-id", ""))
        try:
            if self.telemetry is None:
                await self.app(scope, receive, send)
            else:
                await self._traced(self.telemetry, headers, scope, receive, send)
        finally:
            request_id_var.reset(request_id_token)

    async def _traced(
        self,
        telemetry: Telemetry,
        headers: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        parent = PROPAGATOR.extract(headers)
        name = f"{scope['method']} {scope['path']}"
        attributes: dict[str, Any] = {"http.method": scope["method"], "http.target": scope["path"]}
        if headers.get("x-request-id"):
            attributes["request_id"] = headers["x-request-id"]
        response = _ResponseWatch()
        started_ns = time.time_ns()
        with telemetry.tracer.start_as_current_span(
            name,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            trace_id_token = trace_id_var.set(f"{span.get_span_context().trace_id:032x}")

            async def watched(message: Message) -> None:
                response.see(message)
                await send(message)

            try:
                await self.app(scope, receive, watched)
            except Exception:
                response.status = 500
                response.cause = "internal_error"
                raise
            finally:
                trace_id_var.reset(trace_id_token)
                attributes["http.status_code"] = response.status
                span.set_attribute("http.status_code", response.status)
                error = response.error_cause()
                if error is not None:
                    mark_error(span, error)
        if span.is_recording():
            return
        slow = (time.time_ns() - started_ns) / 1e9 > telemetry.slow_threshold_s
        if error is not None or slow:
            telemetry.rescue(
                name,
                parent,
                started_ns,
                attributes=attributes,
                error=error,
                kind=trace.SpanKind.SERVER,
            )


class _ResponseWatch:
    """The status of the response going out and, for an error, its ``error.code``."""

    def __init__(self) -> None:
        self.status = 500
        self.cause: str | None = None
        self._body = bytearray()

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and self.status >= 400:
            room = _ERROR_BODY_LIMIT - len(self._body)
            if room > 0:
                self._body += message.get("body", b"")[:room]

    def error_cause(self) -> str | None:
        if self.status < 400:
            return None
        if self.cause is not None:
            return self.cause
        try:
            code = json.loads(bytes(self._body))["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        return str(code) if code else f"http_{self.status}"
