"""The engine interface between the HTTP layer and a speech model; torch-free by design."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# OpenAI's built-in voice names; each engine maps them onto voices of its own so OpenAI
# client code works unchanged.
OPENAI_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    language: str


@dataclass(frozen=True)
class ClonedVoice:
    """A voice from the registry (POST /v1/voices): the reference clip and its transcript.

    Engines that clone cache the speaker features they extract from it, keyed by `id`.
    """

    id: str
    prompt_wav: bytes
    prompt_text: str


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str
    speed: float = 1.0
    instructions: str | None = None
    prompt_wav: bytes | None = None
    prompt_text: str | None = None
    cloned: ClonedVoice | None = None


@runtime_checkable
class Engine(Protocol):
    """A speech engine. `synthesize` returns float32 mono samples in [-1, 1] at `sample_rate`."""

    name: str
    sample_rate: int
    ready: bool

    async def load(self) -> None: ...

    def voices(self) -> list[Voice]: ...

    def openai_aliases(self) -> dict[str, str]:
        """OpenAI voice name -> one of `voices()`; empty when the engine has no voices yet."""
        ...

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray: ...


@runtime_checkable
class StreamingEngine(Engine, Protocol):
    """A whole-request engine that can hand over audio piece by piece as it is made."""

    def stream(self, req: SynthesisRequest) -> AsyncIterator[np.ndarray]: ...


def cycle_aliases(voice_ids: list[str]) -> dict[str, str]:
    """Spread the OpenAI voice names over an engine's preferred voices, in order."""
    if not voice_ids:
        return {}
    return {alias: voice_ids[i % len(voice_ids)] for i, alias in enumerate(OPENAI_VOICES)}
