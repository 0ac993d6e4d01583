"""The speech endpoint's work: build the engine request, schedule it, answer in the asked shape.

Raw PCM (chunked, or inside SSE deltas) goes out as the engine makes it: the handler waits
only for the first chunk, so an error before any audio is still an ordinary JSON error.
Container formats (wav, flac, mp3, opus) are encoded whole and then cut, because their
headers carry sizes. A client that goes away frees its queue place or batch slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from opentelemetry import context as otel_context
from opentelemetry import trace

from ttsgw_contract.headers import MODEL_HEADER, PRIORITY_HEADER

from . import audio, streaming
from .engines.base import Engine, SynthesisRequest
from .errors import (
    EngineNotReadyError,
    InputTooLongError,
    UnknownVoiceError,
)
from .lifecycle import EngineLifecycle
from .metrics import WorkerMetrics
from .scheduler import Scheduler, Ticket, parse_level
from .schemas import SpeechRequest
from .settings import WorkerSettings
from .voice_registry import VoiceRegistry, resolve_cloned
from .voices import resolve_voice

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("tts_backends")

# Nobody reads the answer to a request whose client left; nginx's code says what happened.
CLIENT_CLOSED_STATUS = 499

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected while its request waited or ran."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, or raise ClientGone (cancelling it) if the client disconnects first."""
    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if job.done():
        return job.result()
    job.cancel()
    raise ClientGone


class SpeechService:
    def __init__(
        self,
        engine: Engine,
        settings: WorkerSettings,
        scheduler: Scheduler,
        lifecycle: EngineLifecycle,
        metrics: WorkerMetrics,
        voice_registry: VoiceRegistry | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.scheduler = scheduler
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.voice_registry = voice_registry

    async def build(self, body: SpeechRequest) -> SynthesisRequest:
        if len(body.input) > self.settings.max_input_chars:
            raise InputTooLongError(
                f"input is {len(body.input)} characters; the limit is "
                f"{self.settings.max_input_chars}."
            )
        if not self.lifecycle.ready:
            raise EngineNotReadyError(
                f"Engine {self.engine.name!r} is not ready yet; retry shortly."
            )
        prompt_wav = audio.decode_prompt_audio(body.prompt_audio) if body.prompt_audio else None
        cloned = await resolve_cloned(self.voice_registry, body.voice)
        voice = body.voice
        if cloned is None:
            try:
                voice = resolve_voice(self.engine, body.voice)
            except UnknownVoiceError:
                # A cloned voice (prompt_audio) replaces the named one; the engine decides.
                if prompt_wav is None:
                    raise
        return SynthesisRequest(
            text=body.input,
            voice=voice,
            speed=body.speed,
            instructions=body.instructions,
            prompt_wav=prompt_wav,
            prompt_text=body.prompt_text,
            cloned=cloned,
        )

    async def respond(self, body: SpeechRequest, request: Request) -> Response:
        fmt = audio.lookup_format(body.response_format)
        req = await self.build(body)
        incremental = fmt.name in streaming.CHUNKED_AUDIO_FORMATS
        ticket = self.scheduler.submit(
            req,
            parse_level(request.headers.get(PRIORITY_HEADER)),
            stream=incremental,
            trace_context=otel_context.get_current(),
        )
        try:
            if incremental:
                return await self._stream(body, request, ticket)
            samples = await until_disconnect(request, ticket.collect())
        except ClientGone:
            self.scheduler.cancel(ticket)
            self.metrics.observe_request("cancelled")
            log.info("speech cancelled: the client went away (level=%s)", ticket.level)
            return Response(status_code=CLIENT_CLOSED_STATUS)
        payload = await self._encode(samples, fmt)
        self.metrics.observe_request("ok")
        seconds = samples.size / audio.OUTPUT_RATE
        _log_done("ok", body, ticket, seconds)
        return self._whole_response(body, fmt, payload, seconds)

    async def _encode(self, samples: np.ndarray, fmt: audio.AudioFormat) -> bytes:
        with _tracer.start_as_current_span("encode", attributes={"tts.format": fmt.name}):
            samples = audio.resample(samples, self.engine.sample_rate)
            return await asyncio.to_thread(audio.encode, samples, fmt)

    def _whole_response(
        self, body: SpeechRequest, fmt: audio.AudioFormat, payload: bytes, seconds: float
    ) -> Response:
        headers = {MODEL_HEADER: body.model}
        interval = self.settings.stream_chunk_interval_s
        if body.stream_format == "sse":
            events = streaming.sse_events(payload, streaming.Usage.of(body.input, seconds))
            headers["cache-control"] = "no-cache"
            return StreamingResponse(
                streaming.paced(events, interval),
                media_type=streaming.SSE_MEDIA_TYPE,
                headers=headers,
            )
        if fmt.name in streaming.CHUNKED_AUDIO_FORMATS:
            return StreamingResponse(
                streaming.paced(streaming.pieces(payload), interval),
                media_type=fmt.content_type,
                headers=headers,
            )
        return Response(payload, media_type=fmt.content_type, headers=headers)

    async def _stream(self, body: SpeechRequest, request: Request, ticket: Ticket) -> Response:
        chunks = ticket.chunks()
        # The first chunk is awaited here, so a failure before any audio is a JSON error.
        first = await until_disconnect(request, _first(chunks))
        pcm = self._pcm(chunks, first)
        headers = {MODEL_HEADER: body.model}
        interval = self.settings.stream_chunk_interval_s
        if body.stream_format == "sse":
            headers["cache-control"] = "no-cache"
            events = streaming.sse_stream(pcm, body.input)
            return StreamingResponse(
                self._guarded(streaming.paced_async(events, interval), ticket, body),
                media_type=streaming.SSE_MEDIA_TYPE,
                headers=headers,
            )
        return StreamingResponse(
            self._guarded(
                streaming.paced_async(streaming.pieces_async(pcm), interval), ticket, body
            ),
            media_type=audio.lookup_format("pcm").content_type,
            headers=headers,
        )

    async def _pcm(
        self, chunks: AsyncIterator[np.ndarray], first: np.ndarray | None
    ) -> AsyncIterator[bytes]:
        fmt = audio.lookup_format("pcm")
        if first is not None:
            yield audio.encode(audio.resample(first, self.engine.sample_rate), fmt)
        async for chunk in chunks:
            yield audio.encode(audio.resample(chunk, self.engine.sample_rate), fmt)

    async def _guarded(
        self, parts: AsyncIterator[bytes], ticket: Ticket, body: SpeechRequest
    ) -> AsyncIterator[bytes]:
        """The response body; if the client leaves midway, its batch slot is freed."""
        outcome = "cancelled"
        try:
            async for part in parts:
                yield part
            outcome = "ok"
        except Exception:
            # Headers are gone already: the only honest signal left is a cut stream.
            log.exception("stream of a %s request failed midway", ticket.level)
            outcome = "error"
            raise
        finally:
            self.scheduler.cancel(ticket)
            self.metrics.observe_request(outcome)
            _log_done(outcome, body, ticket, ticket.audio_samples / self.engine.sample_rate)


async def _first(chunks: AsyncIterator[Any]) -> Any:
    return await anext(chunks, None)


def _log_done(outcome: str, body: SpeechRequest, ticket: Ticket, seconds: float) -> None:
    """One line per request, never the text; the log filter adds request_id and trace_id."""
    waited = (ticket.started or ticket.arrived) - ticket.arrived
    wall = (ticket.finished_at or ticket.arrived) - (ticket.started or ticket.arrived)
    # The request's server span (a no-op without tracing) gets the figures, never the text.
    trace.get_current_span().set_attributes(
        {
            "tts.model": body.model,
            "tts.priority": ticket.level,
            "tts.text_length": len(ticket.request.text),
            "tts.audio_seconds": round(seconds, 3),
            "tts.batch_size": ticket.max_batch,
            "tts.rtf": round(wall / seconds, 4) if seconds > 0 else 0.0,
            "tts.outcome": outcome,
        }
    )
    log.info(
        "speech %s: model=%s level=%s chars=%d audio_s=%s queue_ms=%.0f batch=%d",
        outcome,
        body.model,
        ticket.level,
        len(ticket.request.text),
        f"{seconds:.2f}",
        waited * 1000,
        ticket.max_batch,
    )
