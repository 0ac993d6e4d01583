"""The cosyvoice3 engine: an adapter over the official CosyVoice3 Python API (FunAudioLLM).

The `cosyvoice` package (and with it torch) is imported only when this engine loads.
Modes, chosen per request:
    instructions                 -> inference_instruct2 (prompt_audio, else the voice's clip)
    prompt_audio + prompt_text   -> inference_zero_shot (clone with a transcript)
    prompt_audio only            -> inference_cross_lingual
    a voices-dir or registry voice -> inference_zero_shot with zero_shot_spk_id
Voices come from `--voices-dir`: `<voice>.wav` + `<voice>.txt` (its transcript) pairs,
registered at load with `add_zero_shot_spk`. Registry voices (`req.cloned`, from
POST /v1/voices) are registered on first use and kept, least recently used first out, up
to `max_cloned_voices`, so their speaker features are extracted once per worker.
A CUDA out-of-memory fails only its request (503; see gpu_memory.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import validate_prompt_audio
from ..errors import (
    BadRequestError,
    EngineLoadError,
    EngineNotReadyError,
    InvalidPromptAudioError,
    SynthesisError,
    UnknownVoiceError,
)
from .base import ClonedVoice, SynthesisRequest, Voice, cycle_aliases
from .gpu_memory import oom_guard
from .text_split import MAX_PIECE_CHARS, split_text

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"
MAX_CLONED_VOICES = 64
WARMUP_TEXT = "Warm up."

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


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
        max_cloned_voices: int = MAX_CLONED_VOICES,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.voices_dir = Path(voices_dir) if voices_dir is not None else None
        self.max_piece_chars = max_piece_chars
        self.sample_rate = 24_000
        self.ready = False
        self._model: Any = None
        self._refs: dict[str, ReferenceVoice] = {}
        # Registry voice ids registered with the model, least recently used first.
        self._cloned: OrderedDict[str, None] = OrderedDict()
        self.max_cloned_voices = max_cloned_voices
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

    def registered_clones(self) -> list[str]:
        """Registry voice ids whose speaker features the model holds, oldest use first."""
        return list(self._cloned)

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        chunks = [chunk async for chunk in self.stream(req)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    async def stream(self, req: SynthesisRequest) -> AsyncIterator[np.ndarray]:
        """The audio of each model output as soon as it exists: one or more per text piece.

        The model runs in a thread; its outputs cross to the event loop through a queue.
        If the consumer goes away, the thread stops before the next model call.
        """
        if self._model is None or self._busy is None:
            raise EngineNotReadyError("cosyvoice3 engine is not loaded.")
        calls = self.plan(req)
        cloned = req.cloned
        uses_clone = cloned is not None and calls[0][2]["zero_shot_spk_id"] == cloned.id
        register = cloned if uses_clone else None
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: np.ndarray | BaseException | None) -> None:
            loop.call_soon_threadsafe(outputs.put_nowait, item)

        async with self._busy:
            worker = asyncio.create_task(asyncio.to_thread(self._run, register, calls, emit, stop))
            try:
                while (item := await outputs.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()
                # The model call in progress cannot be interrupted; wait it out, so the
                # next request never finds the model busy.
                await asyncio.wait({worker})

    async def warm_up(self) -> None:
        """One full pass through the model, with or without voices, before /ready says so.

        Without voices the clip is a generated tone: the speaker it yields is meaningless,
        but every stage (tokenizer, LLM, flow, vocoder) and its CUDA kernels are exercised.
        """
        if self._refs:
            voice = sorted(self._refs)[0]
            await self.synthesize(SynthesisRequest(text=WARMUP_TEXT, voice=voice))
            return
        await self.synthesize(
            SynthesisRequest(text=WARMUP_TEXT, voice="warmup", prompt_wav=warmup_clip())
        )

    def plan(self, req: SynthesisRequest) -> list[Call]:
        """The model calls for a request: (method, args, kwargs), one per text piece."""
        # speed != 1.0 needs non-streaming inference, and a worker answers whole files.
        common = {"stream": False, "speed": req.speed}
        pieces = split_text(req.text, self.max_piece_chars)
        if not pieces:
            raise BadRequestError("input has no speakable text.", param="input")
        ref = self._refs.get(req.voice)
        cloned = req.cloned
        # The request's own clip wins over a named voice, as it does for voices-dir voices.
        wav = req.prompt_wav

        def prompt() -> Any:
            # A fresh file object per call: each call reads it to the end.
            if wav is not None:
                return io.BytesIO(wav)
            if cloned is not None:
                return io.BytesIO(cloned.prompt_wav)
            return str(ref.wav_path if ref else "")

        if req.instructions:
            if wav is None and ref is None and cloned is None:
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
        spk_id = cloned.id if cloned is not None else ref.id if ref is not None else None
        if spk_id is None:
            raise UnknownVoiceError(f"Unknown cosyvoice3 voice {req.voice!r}.")
        return [
            ("inference_zero_shot", (p, "", ""), {"zero_shot_spk_id": spk_id, **common})
            for p in pieces
        ]

    def _run(
        self,
        register: ClonedVoice | None,
        calls: list[Call],
        emit: Callable[[np.ndarray | BaseException | None], None],
        stop: threading.Event,
    ) -> None:
        # In the worker thread, under the engine lock: the LRU and the model are ours alone.
        try:
            with oom_guard(self.name):
                if register is not None:
                    self._register_clone(register)
                for method, args, kwargs in calls:
                    if stop.is_set():
                        break
                    for out in getattr(self._model, method)(*args, **kwargs):
                        emit(np.clip(_to_numpy(out["tts_speech"]), -1.0, 1.0))
        except Exception as exc:
            emit(exc)
            return
        emit(None)

    def _register_clone(self, voice: ClonedVoice) -> None:
        if voice.id in self._cloned:
            self._cloned.move_to_end(voice.id)
            return
        prompt_text = zero_shot_prompt(voice.prompt_text)
        ok = self._model.add_zero_shot_spk(prompt_text, io.BytesIO(voice.prompt_wav), voice.id)
        if ok is False:
            raise SynthesisError(f"CosyVoice3 refused registered voice {voice.id!r}.")
        self._cloned[voice.id] = None
        while len(self._cloned) > self.max_cloned_voices:
            old, _ = self._cloned.popitem(last=False)
            self._forget_speaker(old)

    def _forget_speaker(self, spk_id: str) -> None:
        # Upstream has no removal call; its features live in frontend.spk2info.
        if spk_id in self._refs:
            return
        frontend = getattr(self._model, "frontend", None)
        spk2info = getattr(frontend, "spk2info", None)
        if isinstance(spk2info, dict):
            spk2info.pop(spk_id, None)


def warmup_clip(rate: int = 16_000, seconds: float = 2.0) -> bytes:
    """A quiet, gliding tone as WAV: a prompt for warming up a model with no voices."""
    t = np.arange(int(rate * seconds)) / rate
    samples = 0.2 * np.sin(2 * np.pi * (150 + 50 * t) * t)
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), rate, format="WAV")
    return buf.getvalue()
