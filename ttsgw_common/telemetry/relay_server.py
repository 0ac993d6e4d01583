"""The span relay's HTTP side: Zipkin v2 JSON in (``POST /api/v2/spans``), kept traces out.

Every emitter reports here: Envoy's Zipkin tracer in protobuf (``zipkin_proto.py``: the
cheap encoding on both sides), the filter's and the workers' OTel exporters in JSON; the
``content-type`` says which. Answering is cheap and never waits for the real collector:
spans go into the ``TailSampler``; a background task decides due traces and forwards kept
spans in batches. The outbound queue is bounded, so a collector that is down costs counted
spans, never memory and never an emitter's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from google.protobuf.message import DecodeError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from ttsgw_common.serving import SocketServer, bind_socket
from ttsgw_common.telemetry import zipkin_proto
from ttsgw_common.telemetry.errors import StartupError
from ttsgw_common.telemetry.relay import (
    Outcome,
    SamplerPolicy,
    Span,
    TailSampler,
)
from ttsgw_common.telemetry.settings import TracingSettings

log = logging.getLogger(__name__)

SPANS_PATH = "/api/v2/spans"
# One report must not be able to exhaust the relay; Envoy's reports are a few KB.
MAX_REPORT_BYTES = 16 * 1024 * 1024
FORWARD_BATCH = 1000
TICK_S = 0.1


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "ttsgw_relay_spans_received_total", "Spans reported to the relay.", registry=registry
        )
        self.forwarded = Counter(
            "ttsgw_relay_spans_forwarded_total",
            "Spans of kept traces delivered to the collector.",
            registry=registry,
        )
        self.dropped = Counter(
            "ttsgw_relay_spans_dropped_total",
            "Spans not delivered, by reason: sampled_out, queue_full, forward_failed, "
            "no_collector, malformed.",
            ["reason"],
            registry=registry,
        )
        self.traces = Counter(
            "ttsgw_relay_traces_total",
            "Traces decided, by verdict (kept_error, kept_slow, kept_ratio, dropped).",
            ["verdict"],
            registry=registry,
        )
        self.buffered = Gauge(
            "ttsgw_relay_buffered_spans",
            "Spans waiting for their trace's verdict.",
            registry=registry,
        )


class SpanRelay:
    """The relay's state: sampler, outbound queue, collector client. An ASGI app."""

    def __init__(
        self,
        settings: TracingSettings,
        registry: CollectorRegistry | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = RelayMetrics(self.registry)
        policy = SamplerPolicy(
            ratio=settings.sample_ratio,
            slow_threshold_s=settings.slow_threshold_s,
            grace_s=settings.grace_s,
            max_wait_s=settings.max_wait_s,
            max_spans=settings.max_buffered_spans,
        )
        self.sampler = TailSampler(policy, time.monotonic)
        self._outbound: deque[Span] = deque()
        self._client = httpx.AsyncClient(timeout=settings.forward_timeout_s, transport=transport)
        self._wake = asyncio.Event()

    # --- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == SPANS_PATH and method == "POST":
            status, body = await self._report(receive, _is_protobuf(scope))
            await _answer(send, status, body)
        elif path == "/metrics" and method == "GET":
            self.metrics.buffered.set(self.sampler.buffered_spans)
            await _answer(send, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/health") and method == "GET":
            await _answer(send, 200, b'{"status":"ok"}')
        else:
            await _answer(send, 404, b'{"error":"not found"}')

    async def _report(self, receive: Any, protobuf: bool) -> tuple[int, bytes]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REPORT_BYTES:
                return 413, b'{"error":"report too large"}'
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if protobuf:
            try:
                spans = zipkin_proto.parse(body)
            except DecodeError:
                self.metrics.dropped.labels("malformed").inc()
                return 400, b'{"error":"not a zipkin.proto3.ListOfSpans"}'
            self.metrics.received.inc(len(spans))
            self._apply(self.sampler.add(spans, zipkin_proto.digest))
            return 202, b""
        try:
            spans = json.loads(body)
        except ValueError:
            self.metrics.dropped.labels("malformed").inc()
            return 400, b'{"error":"not JSON"}'
        if not isinstance(spans, list):
            return 400, b'{"error":"expected a JSON array of Zipkin v2 spans"}'
        spans = [s for s in spans if isinstance(s, dict)]
        self.metrics.received.inc(len(spans))
        self.ingest(spans)
        # Zipkin answers 202 Accepted: stored later, maybe never.
        return 202, b""

    # --- the pipeline -------------------------------------------------------

    def ingest(self, spans: list[Span]) -> None:
        self._apply(self.sampler.add(spans))

    def _apply(self, outcome: Outcome) -> None:
        for verdict, n in outcome.verdict_counts().items():
            self.metrics.traces.labels(verdict.value).inc(n)
        for reason, n in outcome.dropped.items():
            self.metrics.dropped.labels(reason).inc(n)
        if not outcome.forward:
            return
        if self.settings.zipkin_url is None:
            self.metrics.dropped.labels("no_collector").inc(len(outcome.forward))
            return
        room = self.settings.max_forward_spans - len(self._outbound)
        if room < len(outcome.forward):
            self.metrics.dropped.labels("queue_full").inc(len(outcome.forward) - max(room, 0))
        self._outbound.extend(outcome.forward[: max(room, 0)])
        if len(self._outbound) >= FORWARD_BATCH:
            self._wake.set()

    async def run_background(self) -> None:
        """Decide due traces and forward kept spans until cancelled."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            self._apply(self.sampler.flush_due())
            await self.forward_pending()

    async def forward_pending(self) -> None:
        while self._outbound and self.settings.zipkin_url is not None:
            batch = [
                _as_json(self._outbound.popleft())
                for _ in range(min(FORWARD_BATCH, len(self._outbound)))
            ]
            try:
                response = await self._client.post(
                    self.settings.zipkin_url,
                    content=json.dumps(batch, separators=(",", ":")),
                    headers={"content-type": "application/json"},
                )
                ok = response.status_code < 300
            except httpx.HTTPError as exc:
                log.debug("forward to %s failed: %s", self.settings.zipkin_url, exc)
                ok = False
            if ok:
                self.metrics.forwarded.inc(len(batch))
            else:
                # No retry: a collector that is down would otherwise pile them up here.
                self.metrics.dropped.labels("forward_failed").inc(len(batch))

    async def drain(self) -> None:
        """Decide everything and send it (shutdown)."""
        self._apply(self.sampler.flush_all())
        await self.forward_pending()

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SpanRelay]:
        task = asyncio.create_task(self.run_background())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self.drain()
            await self.aclose()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with self.running():
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})


def _is_protobuf(scope: dict[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"protobuf" in value
    return False


def _as_json(span: Span) -> dict[str, Any]:
    return span if isinstance(span, dict) else zipkin_proto.to_json(span)


async def _answer(
    send: Any, status: int, body: bytes, content_type: str = "application/json"
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RelayServer(SocketServer):
    """uvicorn around a ``SpanRelay`` on a socket bound up front (port 0 works in tests)."""

    def __init__(self, relay: SpanRelay, host: str, port: int) -> None:
        self.relay = relay
        try:
            sock = bind_socket(host, port, backlog=1024)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        config = uvicorn.Config(relay, log_level="warning", access_log=False, lifespan="on")
        super().__init__(uvicorn.Server(config), sock)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RelayServer]:
        async with self.serving(StartupError("span relay stopped during startup")):
            yield self


def create_server(
    settings: TracingSettings, registry: CollectorRegistry | None = None
) -> tuple[RelayServer, int]:
    """The relay server, not yet serving, and the port it bound."""
    server = RelayServer(SpanRelay(settings, registry), settings.relay_host, settings.relay_port)
    return server, server.port
