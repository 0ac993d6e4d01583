"""The response cache inside the filter: lookup, single-flight, and the fill from the response.

``ResponseCache`` is the process's part (the store, the flights, the background writes);
``SpeechCache`` one speech request's part, owned by its processor: the lookup after
validation (the request-body phase), then the fill from the response phases:

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
    """The cache as the filter process sees it; ``request`` gives each speech request its part."""

    def __init__(
        self,
        store: CacheStore,
        metrics: CacheMetrics,
        *,
        follower_wait_s: float = 30.0,
        flights: SingleFlight | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.follower_wait_s = follower_wait_s
        self.flights = flights or SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    def request(
        self, config: GatewayConfig, request_id: str = "", trace: StreamTrace | None = None
    ) -> SpeechCache:
        return SpeechCache(self, config, request_id, trace)

    async def aclose(self) -> None:
        """Let pending writes finish; the filter is shutting down."""
        self.flights.abandon_all()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def count(self, model: str, outcome: Outcome, nbytes: int = 0) -> None:
        self.metrics.requests.labels(model, outcome).inc()
        self.spawn(self._record(model, outcome, nbytes))

    async def _record(self, model: str, outcome: Outcome, nbytes: int) -> None:
        try:
            await self.store.record(model, outcome, nbytes)
        except Exception:
            # The contract says record never raises; a store that does must not matter.
            log.debug("cache stats record failed", exc_info=True)

    async def put_then_finish(
        self, flight: Flight, key: str, entry: CachedResponse, ttl_s: int
    ) -> None:
        """Store first, then release the followers.

        In this order a request that arrives just after the flight ends finds the entry
        in the store; the other way round it could miss and synthesize again. Followers
        wait one store write longer (bounded by the store's timeout); the leader's own
        response is not held back, since this runs in the background.
        """
        try:
            await self.store.put(key, entry, ttl_s)
        except CacheUnavailable as exc:
            log.debug("cache fill failed: %s", exc)
        finally:
            flight.finish(entry)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class SpeechCache:
    """One speech request's part of the cache: its outcome and, for a leader, the fill."""

    def __init__(
        self,
        cache: ResponseCache,
        config: GatewayConfig,
        request_id: str = "",
        trace: StreamTrace | None = None,
    ) -> None:
        self._cache = cache
        self._config = config
        self._request_id = request_id
        self._trace = trace
        # None until looked up; the value of x-tts-cache after.
        self.outcome: Outcome | None = None
        self._model = ""
        self._key = ""
        self._ttl_s = 0
        # Set only on the leader of a single-flight; it must be finished whatever happens.
        self._flight: Flight | None = None
        self._content_type = ""
        self._backend = ""
        self._chunks: list[bytes] = []
        self._size = 0

    async def lookup(self, request: SpeechRequest) -> ProcessingResponse | None:
        """Decide hit, miss or bypass; the immediate answer when it is a hit."""
        model = self._model = request.model
        config = self._config
        route = config.models[model]
        if not (config.cache.enabled and route.cacheable):
            self._counted("bypass")
            return None
        key = request_key(model, route.cache_generation, _canonical(request))
        try:
            entry = await self._cache.store.get(key)
        except CacheUnavailable as exc:
            log.debug("cache lookup failed, bypassing: %s", exc)
            self._counted("bypass")
            return None
        if entry is not None:
            return self._hit(entry)
        flight = self._cache.flights.join(key)
        if not flight.leader:
            self._cache.metrics.single_flight_waits.inc()
            with child_span(self._trace, "single_flight_wait") as span:
                entry = await flight.wait(self._cache.follower_wait_s)
                if span is not None:
                    span.set_attribute("tts.single_flight", "filled" if entry else "gave_up")
            if entry is not None:
                return self._hit(entry)
            # The leader failed or is slow: this one asks the backend and fills nothing.
            self._counted("miss")
            return None
        self._flight, self._key, self._ttl_s = flight, key, route.cache_ttl_s
        self._backend = route.backends[0]
        self._counted("miss")
        return None

    def start_fill(self, headers: HeaderMap, end_of_stream: bool) -> bool:
        """At the leader's response headers: True when the body should be collected."""
        if self._flight is None:
            return False
        values = header_dict(headers)
        length = values.get("content-length", "")
        too_big = length.isdigit() and int(length) > self._config.cache.max_entry_bytes
        if values.get(":status") != "200" or end_of_stream or too_big:
            self.abandon()
            return False
        self._content_type = values.get("content-type", "application/octet-stream")
        self._backend = values.get(BACKEND_HEADER, self._backend)
        return True

    def add_chunk(self, chunk: bytes, end_of_stream: bool) -> None:
        """One chunk of the leader's response body; the last one completes the fill."""
        if self._flight is None:
            return
        self._size += len(chunk)
        if self._size > self._config.cache.max_entry_bytes:
            self.abandon()
            return
        if chunk:
            self._chunks.append(chunk)
        if not end_of_stream:
            return
        entry = CachedResponse(b"".join(self._chunks), self._content_type, self._backend)
        self._chunks = []
        if _is_event_stream(entry.content_type) and not _ends_with_done(entry.body):
            self.abandon()
            return
        flight, self._flight = self._flight, None
        self._cache.spawn(self._cache.put_then_finish(flight, self._key, entry, self._ttl_s))

    def abandon(self) -> None:
        """Followers of an unfinished fill go to the backend; safe to call twice."""
        if self._flight is not None:
            self._flight.finish(None)
            self._flight = None
        self._chunks = []

    def _counted(self, outcome: Outcome, nbytes: int = 0) -> None:
        self.outcome = outcome
        self._cache.count(self._model, outcome, nbytes)

    def _hit(self, entry: CachedResponse) -> ProcessingResponse:
        self._counted("hit", nbytes=len(entry.body))
        self._cache.metrics.bytes_served.inc(len(entry.body))
        return hit_response(entry, self._request_id)


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
