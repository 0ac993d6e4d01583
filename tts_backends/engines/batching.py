"""The interface of an engine that batches: sessions stepped together, chunks rendered together.

The scheduler (torch-free) drives it from one thread. A request becomes a session; each
`step` generates one speech token for every session in the batch, so requests join and
leave between steps (continuous batching). A session hands out chunks of tokens as they
are ready; `tokens_to_mel` and `vocode` render chunks of many requests in one call. Chunk
boundaries are fixed per request, so the audio never depends on what shared its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .base import Engine, SynthesisRequest


class ChunkJob(Protocol):
    """Tokens of one request ready to render; `index` 0 is the first chunk of a stream."""

    index: int
    final: bool


class Session(Protocol):
    """One request's generation state; never shared between requests."""

    finished: bool

    def take_chunks(self) -> list[ChunkJob]: ...


@runtime_checkable
class BatchingEngine(Engine, Protocol):
    """An engine the scheduler batches. Every method blocks; the scheduler calls them off-loop."""

    def open_session(self, req: SynthesisRequest) -> Session:
        """The text frontend: prepare one request for generation."""
        ...

    def step(self, sessions: Sequence[Session]) -> None:
        """Generate one token for each session (a session that is finished is skipped)."""
        ...

    def tokens_to_mel(self, jobs: Sequence[ChunkJob]) -> list[Any]:
        """Stage 2 for many chunks at once; returns one opaque mel per job, in order."""
        ...

    def vocode(self, jobs: Sequence[ChunkJob], mels: Sequence[Any]) -> list[np.ndarray]:
        """Stage 3: float32 mono samples per job, in order."""
        ...
