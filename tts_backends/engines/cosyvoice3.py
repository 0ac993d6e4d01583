"""The cosyvoice3 engine: an adapter over the official CosyVoice3 Python API (FunAudioLLM).

The `cosyvoice` package (and with it torch) is imported only when this engine loads.
Modes, chosen per request:
    instructions                 -> inference_instruct2 (prompt_audio, else the voice's clip)
    prompt_audio + prompt_text   -> inference_zero_shot (clone with a transcript)
    prompt_audio only            -> inference_cross_lingual
    a registered voice           -> inference_zero_shot with zero_shot_spk_id
Voices come from `--voices-dir`: `<voice>.wav` + `<voice>.txt` (its transcript) pairs,
registered at load with `add_zero_shot_spk`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import validate_prompt_audio
from ..errors import (
    BadRequestError,
    EngineLoadError,
    EngineNotReadyError,
    InvalidPromptAudioError,
    UnknownVoiceError,
)
from .base import SynthesisRequest, Voice, cycle_aliases
from .text_split import MAX_PIECE_CHARS, split_text

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"


def zero_shot_prompt(transcript: str) -> str:
    """CosyVoice3 needs <|endofprompt|> before the reference transcript."""
    return f"{SYSTEM_PROMPT}{END_OF_PROMPT}{transcript}"


def instruct_prompt(instructions: str) -> str:
    instructions = instructions.strip()
    if END_OF_PROMPT in instructions:
        return instructions
    return f"{SYSTEM_PROMPT} {instructions}{END_OF_PROMPT}"


@dataclass(frozen=True)
class ReferenceVoice:
    id: str
    wav_path: Path
    transcript: str


def load_reference_voices(voices_dir: Path) -> list[ReferenceVoice]:
    """Read `<voice>.wav` + `<voice>.txt` pairs; a clip without a transcript is an error."""
    if not voices_dir.is_dir():
        raise EngineLoadError(f"voices dir {voices_dir} does not exist")
    voices = []
    for wav in sorted(voices_dir.glob("*.wav")):
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            raise EngineLoadError(f"voice {wav.stem!r} has no transcript {txt.name}")
        try:
            validate_prompt_audio(wav.read_bytes(), what=f"voice clip {wav.name}")
        except InvalidPromptAudioError as exc:
            raise EngineLoadError(exc.message) from exc
        voices.append(ReferenceVoice(wav.stem, wav, txt.read_text(encoding="utf-8").strip()))
    return voices


def _to_numpy(speech: Any) -> np.ndarray:
    # Tensors are converted without importing torch here.
    if hasattr(speech, "detach"):
        speech = speech.detach().float().cpu().numpy()
    return np.asarray(speech, dtype=np.float32).reshape(-1)


class CosyVoice3Engine:
    name = "cosyvoice3"

    def __init__(
        self,
        model_dir: Path | str,
        voices_dir: Path | str | None = None,
        *,
        max_piece_chars: int = MAX_PIECE_CHARS,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.voices_dir = Path(voices_dir) if voices_dir is not None else None
        self.max_piece_chars = max_piece_chars
        self.sample_rate = 24_000
        self.ready = False
        self._model: Any = None
        self._refs: dict[str, ReferenceVoice] = {}
        # One model call at a time: upstream's model keeps per-call state that is not
        # safe to share across threads. Scheduling is a later layer's job.
        self._busy: asyncio.Lock | None = None

    async def load(self) -> None:
        self._busy = asyncio.Lock()
        refs = load_reference_voices(self.voices_dir) if self.voices_dir else []
        self._model = await asyncio.to_thread(self._load_model, refs)
        self.sample_rate = int(getattr(self._model, "sample_rate", 24_000))
        self._refs = {r.id: r for r in refs}
        self.ready = True

    def _load_model(self, refs: list[ReferenceVoice]) -> Any:
        if not self.model_dir.is_dir():
            raise EngineLoadError(f"CosyVoice3 model dir {self.model_dir} does not exist")
        try:
            from cosyvoice.cli.cosyvoice import AutoModel  # type: ignore[import-not-found]
        except ImportError as exc:
            raise EngineLoadError(
                "the CosyVoice package is not importable; install FunAudioLLM/CosyVoice "
                f"and put it on PYTHONPATH ({exc})"
            ) from exc
        model = AutoModel(model_dir=str(self.model_dir))
        for ref in refs:
            prompt_text = zero_shot_prompt(ref.transcript)
            ok = model.add_zero_shot_spk(prompt_text, str(ref.wav_path), ref.id)
            if ok is False:
                raise EngineLoadError(f"CosyVoice3 refused voice {ref.id!r}")
        return model

    def voices(self) -> list[Voice]:
        return [Voice(id=r.id, name=r.id, language="multi") for r in self._refs.values()]

    def openai_aliases(self) -> dict[str, str]:
        return cycle_aliases(sorted(self._refs))

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        if self._model is None or self._busy is None:
            raise EngineNotReadyError("cosyvoice3 engine is not loaded.")
        calls = self.plan(req)
        async with self._busy:
            return await asyncio.to_thread(self._run_calls, calls)

    def plan(self, req: SynthesisRequest) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """The model calls for a request: (method, args, kwargs), one per text piece."""
        # speed != 1.0 needs non-streaming inference, and a worker answers whole files.
        common = {"stream": False, "speed": req.speed}
        pieces = split_text(req.text, self.max_piece_chars)
        if not pieces:
            raise BadRequestError("input has no speakable text.", param="input")
        ref = self._refs.get(req.voice)
        wav = req.prompt_wav

        def prompt() -> Any:
            # A fresh file object per call: each call reads it to the end.
            return io.BytesIO(wav) if wav is not None else str(ref.wav_path if ref else "")

        if req.instructions:
            if wav is None and ref is None:
                raise UnknownVoiceError(
                    f"instructions need a registered voice or prompt_audio; {req.voice!r} is "
                    "not a registered voice."
                )
            instruct = instruct_prompt(req.instructions)
            # No zero_shot_spk_id here: with one, upstream reuses the stored prompt text and
            # the instruction would be lost; the reference clip is passed instead.
            return [
                ("inference_instruct2", (p, instruct, prompt()), {"zero_shot_spk_id": "", **common})
                for p in pieces
            ]
        if wav is not None and req.prompt_text:
            text = zero_shot_prompt(req.prompt_text)
            return [
                ("inference_zero_shot", (p, text, prompt()), {"zero_shot_spk_id": "", **common})
                for p in pieces
            ]
        if wav is not None:
            # CosyVoice3 wants the system prompt in the text itself in cross-lingual mode.
            return [
                (
                    "inference_cross_lingual",
                    (zero_shot_prompt(p), prompt()),
                    {"zero_shot_spk_id": "", **common},
                )
                for p in pieces
            ]
        if ref is None:
            raise UnknownVoiceError(f"Unknown cosyvoice3 voice {req.voice!r}.")
        return [
            ("inference_zero_shot", (p, "", ""), {"zero_shot_spk_id": ref.id, **common})
            for p in pieces
        ]

    def _run_calls(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> np.ndarray:
        chunks: list[np.ndarray] = []
        for method, args, kwargs in calls:
            for out in getattr(self._model, method)(*args, **kwargs):
                chunks.append(_to_numpy(out["tts_speech"]))
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.clip(np.concatenate(chunks), -1.0, 1.0)
