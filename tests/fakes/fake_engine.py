"""FakeToneEngine: a torch-free Engine that renders a sine tone, for HTTP-contract tests."""

from __future__ import annotations

import asyncio

import numpy as np

from tts_backends.engines.base import SynthesisRequest, Voice, cycle_aliases


class FakeToneEngine:
    """Renders 0.05 s of a 440 Hz tone per character at 16 kHz (so the app must resample).

    `load_gate` lets a test hold the engine in "loading"; `fail_with` makes synthesis raise.
    """

    name = "fake-tone"
    sample_rate = 16_000

    def __init__(self, *, load_gate: asyncio.Event | None = None) -> None:
        self.ready = False
        self.load_gate = load_gate
        self.fail_with: Exception | None = None
        self.requests: list[SynthesisRequest] = []

    async def load(self) -> None:
        if self.load_gate is not None:
            await self.load_gate.wait()
        self.ready = True

    def voices(self) -> list[Voice]:
        return [Voice("tone-a", "Tone A", "en"), Voice("tone-b", "Tone B", "en")]

    def openai_aliases(self) -> dict[str, str]:
        return cycle_aliases(["tone-a", "tone-b"])

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        self.requests.append(req)
        if self.fail_with is not None:
            raise self.fail_with
        n = int(self.sample_rate * 0.05 * len(req.text) / req.speed)
        t = np.arange(n) / self.sample_rate
        return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
