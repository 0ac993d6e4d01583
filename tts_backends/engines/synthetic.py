"""The synthetic engine: an honestly named, weight-free stand-in for CosyVoice3.

It is NOT a speech model and its audio is noise-like. It runs a small torch model with
CosyVoice3's three stages (speech-token LM, token-to-mel, vocoder; see synthetic_model.py)
on seeded random weights, the way vLLM serves dummy weights, so CI and load tests exercise
the real code path, tensor shapes and compute pattern of a GPU worker without weights.
The audio length follows the text (~0.08 s per character, divided by speed) and the same
request always gives the same samples.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading

import numpy as np
import torch

from ..errors import EngineNotReadyError, UnknownVoiceError
from .base import SynthesisRequest, Voice, cycle_aliases
from .synthetic_model import SAMPLE_RATE, SyntheticTTSModel

log = logging.getLogger(__name__)

VOICES = tuple(
    Voice(id=f"synthetic-{i}", name=f"Synthetic {i} (noise, not speech)", language="und")
    for i in range(1, 5)
)
PEAK = 0.5


class SyntheticEngine:
    name = "synthetic"
    sample_rate = SAMPLE_RATE

    def __init__(self, device: str = "cpu", seed: int = 0) -> None:
        if device == "cuda" and not torch.cuda.is_available():
            log.warning("CUDA requested but not available; the synthetic engine runs on CPU")
            device = "cpu"
        self.device = torch.device(device)
        self.seed = seed
        self.ready = False
        self._model: SyntheticTTSModel | None = None
        self._speakers = {v.id: i for i, v in enumerate(VOICES)}
        # One request at a time: torch already spreads one request over every core.
        self._lock = threading.Lock()

    async def load(self) -> None:
        self._model = await asyncio.to_thread(self._build)
        self.ready = True

    def _build(self) -> SyntheticTTSModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = SyntheticTTSModel(n_speakers=len(VOICES))
        return model.eval().to(self.device)

    def voices(self) -> list[Voice]:
        return list(VOICES)

    def openai_aliases(self) -> dict[str, str]:
        return cycle_aliases([v.id for v in VOICES])

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        if self._model is None:
            raise EngineNotReadyError("synthetic engine is not loaded.")
        if req.voice not in self._speakers:
            raise UnknownVoiceError(f"Unknown synthetic voice {req.voice!r}.")
        return await asyncio.to_thread(self._synthesize_blocking, req)

    def _synthesize_blocking(self, req: SynthesisRequest) -> np.ndarray:
        assert self._model is not None
        speaker = self._speakers[req.voice]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.request_seed(req))
        with self._lock:
            tokens = self._model.generate_tokens(req.text, speaker, req.speed, generator)
            mel = self._model.tokens_to_mel(tokens, speaker)
            wave = self._model.vocode(mel)[0]
        samples = wave.float().cpu().numpy()
        samples = samples - samples.mean()
        peak = float(np.abs(samples).max())
        if peak > 0:
            samples = samples * (PEAK / peak)
        return samples.astype(np.float32)

    def request_seed(self, req: SynthesisRequest) -> int:
        """A seed from everything that shapes the audio, so equal requests sound equal."""
        key = f"{self.seed}|{req.voice}|{req.speed!r}|{req.instructions}|{req.text}"
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1
