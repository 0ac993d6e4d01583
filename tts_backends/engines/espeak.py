"""The espeak engine: real, intelligible speech on CPU from Debian's espeak-ng binary."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct

import numpy as np

from ..errors import (
    BadRequestError,
    EngineLoadError,
    EngineNotReadyError,
    SynthesisError,
    UnknownVoiceError,
)
from .base import SynthesisRequest, Voice, cycle_aliases

BASE_WPM = 175
# espeak-ng ignores rates below 80 wpm; above 450 it speeds up with sonic, which works.
MIN_WPM, MAX_WPM = 80, 700
# English voices first, so OpenAI's voice names land on English speakers.
PREFERRED_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)


def parse_voices(listing: str) -> list[Voice]:
    """Parse `espeak-ng --voices`: Pty Language Age/Gender VoiceName File [Other Languages]."""
    voices: dict[str, Voice] = {}
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        language, name = parts[1], parts[3].replace("_", " ")
        voices.setdefault(language, Voice(id=language, name=name, language=language))
    return list(voices.values())


def parse_wav_stream(data: bytes) -> tuple[np.ndarray, int]:
    """Decode espeak-ng's --stdout WAV, whose RIFF and data sizes are placeholders."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng did not produce a WAV stream.")
    pos, rate, bits = 12, 0, 16
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            fields = struct.unpack("<HHIIHH", data[body : body + 16])
            channels, rate, bits = fields[1], fields[2], fields[5]
            if channels != 1 or bits != 16:
                raise SynthesisError(f"espeak-ng produced {channels} ch / {bits} bit audio.")
        elif chunk_id == b"data":
            pcm = data[body:]
            pcm = pcm[: len(pcm) - len(pcm) % 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos = body + size + (size & 1)
    raise SynthesisError("espeak-ng output has no data chunk.")


class EspeakEngine:
    name = "espeak"
    sample_rate = 22_050

    def __init__(self, binary: str = "espeak-ng", concurrency: int | None = None) -> None:
        self.binary = binary
        self.ready = False
        self._path: str | None = None
        self._voices: list[Voice] = []
        self._aliases: dict[str, str] = {}
        # One espeak-ng process per core keeps every core busy without oversubscribing.
        self.concurrency = concurrency or os.cpu_count() or 1
        self._slots: asyncio.Semaphore | None = None

    async def load(self) -> None:
        # Made here, not in __init__, so it belongs to the loop that serves requests.
        self._slots = asyncio.Semaphore(self.concurrency)
        self._path = shutil.which(self.binary)
        if self._path is None:
            raise EngineLoadError(
                f"{self.binary} not found on PATH; install it with `apt-get install espeak-ng`."
            )
        out, err, rc = await self._run("--voices")
        if rc != 0:
            raise EngineLoadError(f"{self.binary} --voices failed: {_first_line(err)}")
        self._voices = parse_voices(out.decode("utf-8", "replace"))
        ids = {v.id for v in self._voices}
        preferred = [v for v in PREFERRED_VOICES if v in ids] or [self._voices[0].id]
        self._aliases = cycle_aliases(preferred)
        self.ready = True

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def openai_aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    async def synthesize(self, req: SynthesisRequest) -> np.ndarray:
        if req.cloned is not None:
            raise BadRequestError(
                f"espeak-ng cannot speak with the registered voice {req.cloned.id!r}: it does "
                "not clone voices. Use a cosyvoice3 model for voices from POST /v1/voices.",
                param="voice",
            )
        if req.voice not in {v.id for v in self._voices}:
            raise UnknownVoiceError(f"Unknown espeak-ng voice {req.voice!r}.")
        wpm = min(MAX_WPM, max(MIN_WPM, round(BASE_WPM * req.speed)))
        # Text goes in on stdin, so input starting with "-" is never read as an option.
        out, err, rc = await self._run(
            "--stdout", "-v", req.voice, "-s", str(wpm), stdin=req.text.encode("utf-8")
        )
        if rc != 0:
            raise SynthesisError(f"espeak-ng exited with {rc}: {_first_line(err)}")
        samples, rate = parse_wav_stream(out)
        if rate != self.sample_rate:
            from ..audio import resample

            samples = resample(samples, rate, self.sample_rate)
        return samples

    async def _run(self, *args: str, stdin: bytes | None = None) -> tuple[bytes, bytes, int]:
        if self._slots is None:
            raise EngineNotReadyError("espeak engine is not loaded.")
        async with self._slots:
            proc = await asyncio.create_subprocess_exec(
                self._path or self.binary,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate(stdin)
            return out, err, proc.returncode or 0


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "(no message)"
