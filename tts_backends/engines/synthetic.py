"""The synthetic engine: an honestly named, weight-free stand-in for CosyVoice3.

It is NOT a speech model and its audio is noise-like. It runs a small torch model with
CosyVoice3's three stages (speech-token LM, token-to-mel, vocoder; see synthetic_model.py)
on seeded random weights, the way vLLM serves dummy weights, so CI and load tests exercise
the real code path, tensor shapes and compute pattern of a GPU worker without weights.
The audio length follows the text (~0.08 s per character, divided by speed) and the same
request always gives the same samples, alone or batched with others: each request draws
from its own random stream, and audio is rendered in chunks at fixed token boundaries.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
import torch

from ..errors import EngineNotReadyError, InvalidPromptAudioError, UnknownVoiceError
from .base import SynthesisRequest, Voice, cycle_aliases
from .batching import ChunkJob, Session
from .gpu_memory import oom_guard
from .synthetic_model import BOS, SAMPLE_RATE, SIZES, SyntheticTTSModel, token_count

log = logging.getLogger(__name__)

VOICES = tuple(
    Voice(id=f"synthetic-{i}", name=f"Synthetic {i} (noise, not speech)", language="und")
    for i in range(1, 5)
)
# A fixed gain, not per-utterance normalisation: a stream cannot know its peak ahead.
GAIN = 2.5
# Chunk boundaries, as CosyVoice3 streams: a short first chunk (1 s) so playback starts
# early, then 2 s chunks. Fixed per request, so streamed and whole audio are identical.
FIRST_CHUNK_TOKENS = 25
CHUNK_TOKENS = 50
# Cloned voices whose speaker features stay cached (extracting them costs an FFT).
SPEAKER_CACHE_SIZE = 256


@dataclass(eq=False)
class SyntheticChunk:
    index: int
    final: bool
    tokens: torch.Tensor  # [T]
    speaker_mel: torch.Tensor  # [80]


@dataclass(eq=False)
class SyntheticSession:
    """One request's LM state: its own uniforms, hidden state and tokens; never shared."""

    aligned: torch.Tensor  # [n, dim] text features per token
    uniforms: torch.Tensor  # [n] this request's random draws
    state: torch.Tensor  # [H]
    speaker_mel: torch.Tensor  # [80]
    tokens: torch.Tensor  # [n]
    t: int = 0
    emitted: int = 0
    chunk_index: int = 0
    prev: int = BOS
    finished: bool = False

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])

    def take_chunks(self) -> list[ChunkJob]:
        chunks: list[ChunkJob] = []
        while self.emitted < self.n:
            size = FIRST_CHUNK_TOKENS if self.chunk_index == 0 else CHUNK_TOKENS
            end = min(self.emitted + size, self.n)
            if self.t < end:
                break
            chunks.append(
                SyntheticChunk(
                    self.chunk_index,
                    end == self.n,
                    self.tokens[self.emitted : end],
                    self.speaker_mel,
                )
            )
            self.emitted, self.chunk_index = end, self.chunk_index + 1
        return chunks


class SyntheticEngine:
    name = "synthetic"
    sample_rate = SAMPLE_RATE

    def __init__(self, device: str = "cpu", seed: int = 0, size: str = "small") -> None:
        if device == "cuda" and not torch.cuda.is_available():
            log.warning("CUDA requested but not available; the synthetic engine runs on CPU")
            device = "cpu"
        self.device = torch.device(device)
        self.seed = seed
        if size not in SIZES:
            raise ValueError(f"unknown synthetic size {size!r}; known: {', '.join(SIZES)}")
        self.size = size
        self.ready = False
        self._model: SyntheticTTSModel | None = None
        self._speakers = {v.id: i for i, v in enumerate(VOICES)}
        self._cloned: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        # Direct synthesize() calls (warm-up, tests) run one at a time; the scheduler has
        # its own single engine thread.
        self._lock = threading.Lock()

    async def load(self) -> None:
        self._model = await asyncio.to_thread(self._build)
        self.ready = True

    def _build(self) -> SyntheticTTSModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            dim, hidden = SIZES[self.size]
            model = SyntheticTTSModel(n_speakers=len(VOICES), dim=dim, hidden=hidden)
        return model.eval().to(self.device)

    def voices(self) -> list[Voice]:
        return list(VOICES)

    def openai_aliases(self) -> dict[str, str]:
        return cycle_aliases([v.id for v in VOICES])

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def gpu_memory(self) -> dict[str, int]:
        if not self.on_gpu:
            return {}
        return {
            "allocated": torch.cuda.memory_allocated(self.device),
            "reserved": torch.cuda.memory_reserved(self.device),
        }

    @property
    def model(self) -> SyntheticTTSModel:
        if self._model is None:
            raise EngineNotReadyError("synthetic engine is not loaded.")
        return self._model

    # The unbatched path: the reference every batched result must equal.
    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        _ = self.model  # raises before a thread is spent on an unloaded engine
        return await asyncio.to_thread(self._synthesize_blocking, req)

    def _synthesize_blocking(self, req: SynthesisRequest) -> np.ndarray:
        with self._lock:
            session = self.open_session(req)
            jobs: list[ChunkJob] = []
            while not session.finished:
                self.step([session])
                jobs += session.take_chunks()
            parts = [self.vocode([j], self.tokens_to_mel([j]))[0] for j in jobs]
        return np.concatenate(parts)

    # BatchingEngine.
    def open_session(self, req: SynthesisRequest) -> SyntheticSession:
        model = self.model
        state, speaker_mel = self._speaker(req)
        n = token_count(len(req.text), req.speed)
        generator = torch.Generator(device="cpu").manual_seed(self.request_seed(req))
        with oom_guard(self.name):
            return SyntheticSession(
                aligned=model.encode_text(req.text, n),
                uniforms=torch.rand(n, generator=generator).to(self.device),
                state=state,
                speaker_mel=speaker_mel,
                tokens=torch.empty(n, dtype=torch.long, device=self.device),
            )

    def step(self, sessions: Sequence[Session]) -> None:
        rows = [s for s in sessions if isinstance(s, SyntheticSession) and not s.finished]
        if not rows:
            return
        device = self.device
        with oom_guard(self.name):
            tokens, states = self.model.lm_step(
                torch.tensor([s.prev for s in rows], device=device),
                torch.stack([s.aligned[s.t] for s in rows]),
                torch.stack([s.state for s in rows]),
                torch.stack([s.uniforms[s.t] for s in rows]),
            )
            picked = tokens.tolist()
        # Written back only after the whole step succeeded, so a failed batch can be
        # retried row by row from the same state.
        for i, s in enumerate(rows):
            s.tokens[s.t] = picked[i]
            s.prev, s.state, s.t = picked[i], states[i], s.t + 1
            s.finished = s.t >= s.n

    def tokens_to_mel(self, jobs: Sequence[ChunkJob]) -> list[Any]:
        out: list[Any] = [None] * len(jobs)
        # Equal lengths batch without padding, so a row never sees another's frames.
        for idx in _by_length(jobs).values():
            chunks = [_chunk(jobs[i]) for i in idx]
            with oom_guard(self.name):
                mel = self.model.tokens_to_mel(
                    torch.stack([c.tokens for c in chunks]),
                    torch.stack([c.speaker_mel for c in chunks]),
                )
            for k, i in enumerate(idx):
                out[i] = mel[k]
        return out

    def vocode(self, jobs: Sequence[ChunkJob], mels: Sequence[Any]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(jobs)
        for idx in _by_length(jobs).values():
            with oom_guard(self.name):
                wave = self.model.vocode(torch.stack([mels[i] for i in idx]))
                samples = (wave.float() * GAIN).clamp_(-1.0, 1.0).cpu().numpy().astype(np.float32)
            for k, i in enumerate(idx):
                out[i] = samples[k]
        return out

    # Voices.
    def _speaker(self, req: SynthesisRequest) -> tuple[torch.Tensor, torch.Tensor]:
        if req.cloned is not None:
            return self._cloned_speaker(req.cloned.id, req.cloned.prompt_wav)
        if req.prompt_wav is not None:
            key = hashlib.sha256(req.prompt_wav).hexdigest()
            return self._cloned_speaker(f"prompt:{key}", req.prompt_wav)
        if req.voice not in self._speakers:
            raise UnknownVoiceError(f"Unknown synthetic voice {req.voice!r}.")
        return self.model.speaker(self._speakers[req.voice])

    def _cloned_speaker(self, key: str, wav: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        """Speaker features of a reference clip, extracted once and cached by voice id."""
        cached = self._cloned.get(key)
        if cached is not None:
            self._cloned.move_to_end(key)
            return cached
        try:
            samples, _ = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise InvalidPromptAudioError(f"prompt audio is not readable: {exc}") from exc
        features = self.model.clone_speaker(torch.from_numpy(samples.mean(axis=1)))
        self._cloned[key] = features
        if len(self._cloned) > SPEAKER_CACHE_SIZE:
            self._cloned.popitem(last=False)
        return features

    @property
    def cached_speakers(self) -> int:
        return len(self._cloned)

    def request_seed(self, req: SynthesisRequest) -> int:
        """A seed from everything that shapes the audio, so equal requests sound equal."""
        cloned = req.cloned.id if req.cloned else ""
        key = f"{self.seed}|{req.voice}|{cloned}|{req.speed!r}|{req.instructions}|{req.text}"
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def _chunk(job: ChunkJob) -> SyntheticChunk:
    if not isinstance(job, SyntheticChunk):
        raise TypeError(f"not a synthetic chunk: {type(job).__name__}")
    return job


def _by_length(jobs: Sequence[ChunkJob]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(int(_chunk(job).tokens.shape[0]), []).append(i)
    return groups
