"""GatedEngine: a torch-free whole-request engine whose calls finish when a test says so."""

from __future__ import annotations

import asyncio

import numpy as np

from tts_backends.engines.base import SynthesisRequest, Voice, cycle_aliases


class GatedEngine:
    """Each synthesize() records its text in `started` and waits for `release(text)`.

    `auto=True` answers at once, so a test can measure pure scheduling order.
    """

    name = "gated"
    sample_rate = 24_000

    def __init__(self, *, auto: bool = False, concurrency: int = 1) -> None:
        self.ready = True
        self.auto = auto
        self.concurrency = concurrency
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.fail_with: dict[str, BaseException] = {}
        self._gates: dict[str, asyncio.Event] = {}

    async def load(self) -> None:
        self.ready = True

    def voices(self) -> list[Voice]:
        return [Voice("gate", "Gate", "en")]

    def openai_aliases(self) -> dict[str, str]:
        return cycle_aliases(["gate"])

    def release(self, text: str) -> None:
        self._gates.setdefault(text, asyncio.Event()).set()

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        self.started.append(req.text)
        try:
            if not self.auto:
                await self._gates.setdefault(req.text, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(req.text)
            raise
        if req.text in self.fail_with:
            raise self.fail_with[req.text]
        return np.full(240, 0.25, dtype=np.float32)
