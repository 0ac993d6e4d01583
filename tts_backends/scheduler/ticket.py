"""Ticket: one request's place in the scheduler, and the channel its audio comes back on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.base import SynthesisRequest
from .levels import RANK

_END = object()


@dataclass(eq=False)
class Ticket:
    request: SynthesisRequest
    level: str
    arrived: float
    stream: bool = False
    # The caller's tracing context, so stage spans become children of its request span.
    trace_context: Any = None
    started: float | None = None
    first_chunk_at: float | None = None
    finished_at: float | None = None
    cancelled: bool = False
    audio_samples: int = 0
    max_batch: int = 0
    _chunks: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def effective_rank(self, now: float, aging_s: float) -> int:
        """The level's rank, raised one level per `aging_s` waited (0 is the best)."""
        if aging_s <= 0:
            return RANK[self.level]
        return max(0, RANK[self.level] - int((now - self.arrived) // aging_s))

    @property
    def done(self) -> bool:
        return self.finished_at is not None or self.cancelled

    # Producer side (the scheduler).
    def emit(self, samples: np.ndarray, now: float) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = now
        self.audio_samples += samples.size
        self._chunks.put_nowait(samples)

    def finish(self, now: float) -> None:
        self.finished_at = now
        self._chunks.put_nowait(_END)

    def fail(self, exc: BaseException, now: float) -> None:
        self.finished_at = now
        self._chunks.put_nowait(exc)

    # Consumer side (the HTTP handler).
    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """The audio as it is made; raises the engine's error if it failed midway."""
        while True:
            item = await self._chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def collect(self) -> np.ndarray:
        parts = [chunk async for chunk in self.chunks()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
