"""The response cache inside the filter: lookup, single-flight, and the fill from the response.

Per speech request, after validation (the request-body phase):

- ``bypass`` unless the cache is enabled and the model has a TTL and exactly one backend
  (a split model's answer must never cross variants). A store that is down or slow is a
  ``bypass`` too: the cache fails open and the request goes to the backend.
- ``hit``: answered here with an immediate response; no backend is touched.
- ``miss``: the first request for a key leads a single-flight and goes to the backend;
  its response (status 200, within ``max_entry_bytes``) fills the cache and is handed to
  the identical requests that arrived meanwhile and wait for it, bounded. They answer as
  a ``hit``; if the leader fails they go to the backend themselves (``miss``).

Streamed answers (``stream_format: "sse"``, chunked PCM) are cached like any other: the
leader's body passes through chunk by chunk on its way to the client while the filter
keeps a copy, and the entry is the whole body once the stream has ended. An event stream
is stored only when it ends with ``speech.audio.done``, so a stream the worker cut short
is never replayed. A hit answers with the stored body in one piece; the key holds
``stream_format``, so SSE and audio answers never mix.

How the response reaches the filter is in ``modes.py`` (verified against Envoy 1.40).
Writes to the store and the per-model stats run in the background, so a slow store
never delays the audio on its way to the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderMap
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HeaderMutation,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from gateway.cache.single_flight import Flight, SingleFlight
from gateway.ext_proc.context import CacheState
from gateway.ext_proc.headers import header_dict, set_header
from gateway.ext_proc.metrics import CacheMetrics
from gateway.ext_proc.tracing import StreamTrace, child_span
from gateway.speech import SpeechRequest
from ttsgw_contract.cache import CachedResponse, CacheStore, CacheUnavailable, Outcome
from ttsgw_contract.cache_keys import canonical_request, request_key
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.headers import BACKEND_HEADER, CACHE_HEADER, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"
# The last event of a complete speech stream; a body without it was cut short.
SSE_DONE = "speech.audio.done"


class ResponseCache:
    def __init__(
        self,
        store: CacheStore,
        metrics: CacheMetrics,
        *,
        follower_wait_s: float = 30.0,
        flights: SingleFlight | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._follower_wait_s = follower_wait_s
        self._flights = flights or SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    async def lookup(
        self,
        config: GatewayConfig,
        request: SpeechRequest,
        request_id: str = "",
        *,
        trace: StreamTrace | None = None,
    ) -> tuple[CacheState, ProcessingResponse | None]:
        """The request's cache state, and the immediate answer when it is a hit."""
        model = request.model
        route = config.models[model]
        if not (config.cache.enabled and route.cacheable):
            return self._bypass(model), None
        key = request_key(model, route.cache_generation, _canonical(request))
        try:
            entry = await self._store.get(key)
        except CacheUnavailable as exc:
            log.debug("cache lookup failed, bypassing: %s", exc)
            return self._bypass(model), None
        if entry is not None:
            return self._hit(model, entry, request_id)
        flight = self._flights.join(key)
        if not flight.leader:
            self._metrics.single_flight_waits.inc()
            with child_span(trace, "single_flight_wait") as span:
                entry = await flight.wait(self._follower_wait_s)
                if span is not None:
                    span.set_attribute("tts.single_flight", "filled" if entry else "gave_up")
            if entry is not None:
                return self._hit(model, entry, request_id)
            # The leader failed or is slow: this one asks the backend and fills nothing.
            return self._count(CacheState("miss", model=model)), None
        state = CacheState(
            "miss",
            model=model,
            key=key,
            ttl_s=route.cache_ttl_s,
            max_entry_bytes=config.cache.max_entry_bytes,
            flight=flight,
            backend=route.backends[0],
        )
        return self._count(state), None

    def start_fill(self, state: CacheState, headers: HeaderMap, end_of_stream: bool) -> bool:
        """At the leader's response headers: True when the body should be collected."""
        if state.flight is None:
            return False
        values = header_dict(headers)
        length = values.get("content-length", "")
        too_big = length.isdigit() and int(length) > state.max_entry_bytes
        if values.get(":status") != "200" or end_of_stream or too_big:
            state.abandon()
            return False
        state.content_type = values.get("content-type", "application/octet-stream")
        state.backend = values.get(BACKEND_HEADER, state.backend)
        return True

    def add_chunk(self, state: CacheState, chunk: bytes, end_of_stream: bool) -> None:
        """One chunk of the leader's response body; the last one completes the fill."""
        if state.flight is None:
            return
        state.size += len(chunk)
        if state.size > state.max_entry_bytes:
            state.abandon()
            return
        if chunk:
            state.chunks.append(chunk)
        if not end_of_stream:
            return
        entry = CachedResponse(b"".join(state.chunks), state.content_type, state.backend)
        state.chunks = []
        if _is_event_stream(entry.content_type) and not _ends_with_done(entry.body):
            state.abandon()
            return
        flight, state.flight = state.flight, None
        if state.key is None:
            flight.finish(entry)
            return
        self._spawn(self._put_then_finish(flight, state.key, entry, state.ttl_s))

    async def aclose(self) -> None:
        """Let pending writes finish; the filter is shutting down."""
        self._flights.abandon_all()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _bypass(self, model: str) -> CacheState:
        return self._count(CacheState("bypass", model=model))

    def _hit(
        self, model: str, entry: CachedResponse, request_id: str
    ) -> tuple[CacheState, ProcessingResponse]:
        state = self._count(CacheState("hit", model=model), nbytes=len(entry.body))
        self._metrics.bytes_served.inc(len(entry.body))
        return state, hit_response(entry, request_id)

    def _count(self, state: CacheState, nbytes: int = 0) -> CacheState:
        self._metrics.requests.labels(state.model, state.outcome).inc()
        self._spawn(self._record(state.model, state.outcome, nbytes))
        return state

    async def _record(self, model: str, outcome: Outcome, nbytes: int) -> None:
        try:
            await self._store.record(model, outcome, nbytes)
        except Exception:
            # The contract says record never raises; a store that does must not matter.
            log.debug("cache stats record failed", exc_info=True)

    async def _put_then_finish(
        self, flight: Flight, key: str, entry: CachedResponse, ttl_s: int
    ) -> None:
        """Store first, then release the followers.

        In this order a request that arrives just after the flight ends finds the entry
        in the store; the other way round it could miss and synthesize again. Followers
        wait one store write longer (bounded by the store's timeout); the leader's own
        response is not held back, since this runs in the background.
        """
        try:
            await self._store.put(key, entry, ttl_s)
        except CacheUnavailable as exc:
            log.debug("cache fill failed: %s", exc)
        finally:
            flight.finish(entry)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def hit_response(entry: CachedResponse, request_id: str = "") -> ProcessingResponse:
    headers = [
        set_header("content-type", entry.content_type),
        set_header(CACHE_HEADER, "hit"),
        set_header(BACKEND_HEADER, entry.backend),
    ]
    if request_id:
        headers.append(set_header(REQUEST_ID_HEADER, request_id))
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=200),  # type: ignore[arg-type]
            headers=HeaderMutation(set_headers=headers),
            body=entry.body,
            details="ttsgw_cache_hit",
        )
    )


def _is_event_stream(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == SSE_MEDIA_TYPE


def _ends_with_done(body: bytes) -> bool:
    """Whether the last event of an SSE body is ``speech.audio.done`` (a complete stream)."""
    last = body.replace(b"\r\n", b"\n").rstrip(b"\n").rpartition(b"\n\n")[2]
    data = b"\n".join(
        line.removeprefix(b"data:").removeprefix(b" ")
        for line in last.split(b"\n")
        if line.startswith(b"data:")
    )
    try:
        event = json.loads(data)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("type") == SSE_DONE


def _canonical(request: SpeechRequest) -> dict[str, object]:
    return canonical_request(
        model=request.model,
        voice=request.voice,
        input=request.input,
        response_format=request.response_format,
        speed=request.speed,
        instructions=request.instructions,
        stream_format=request.stream_format,
        prompt_audio=request.prompt_audio,
        prompt_text=request.prompt_text,
    )
