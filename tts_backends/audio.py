"""Audio in and out of a worker: resampling to 24 kHz mono and the response encoders."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

from ttsgw_contract.limits import MAX_PROMPT_AUDIO_SECONDS, PROMPT_MIN_RATE

from .errors import InvalidPromptAudioError, UnsupportedFormatError

OUTPUT_RATE = 24_000


@dataclass(frozen=True)
class AudioFormat:
    name: str
    content_type: str
    # soundfile (container, subtype); None for raw PCM, which needs no container.
    container: str | None
    subtype: str | None


# Ordered by how often clients ask for them; only those libsndfile can write are offered.
_CANDIDATES = (
    AudioFormat("wav", "audio/wav", "WAV", "PCM_16"),
    AudioFormat("pcm", "audio/pcm", None, None),
    AudioFormat("flac", "audio/flac", "FLAC", "PCM_16"),
    AudioFormat("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
    AudioFormat("opus", "audio/opus", "OGG", "OPUS"),
)


@cache
def supported_formats() -> dict[str, AudioFormat]:
    """The response formats this machine's libsndfile can actually write."""
    containers = sf.available_formats()
    out: dict[str, AudioFormat] = {}
    for fmt in _CANDIDATES:
        writable = fmt.container is None or (
            fmt.container in containers and fmt.subtype in sf.available_subtypes(fmt.container)
        )
        if writable:
            out[fmt.name] = fmt
    return out


def lookup_format(name: str) -> AudioFormat:
    fmt = supported_formats().get(name)
    if fmt is None:
        names = ", ".join(supported_formats())
        raise UnsupportedFormatError(
            f"Unsupported response_format {name!r}; this worker supports: {names}."
        )
    return fmt


def resample(samples: np.ndarray, rate: int, target: int = OUTPUT_RATE) -> np.ndarray:
    """Linear-interpolation resampling; enough for speech going up from 22.05 kHz."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if rate == target or samples.size == 0:
        return samples
    n_out = round(samples.size * target / rate)
    positions = np.arange(n_out, dtype=np.float64) * (rate / target)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype("<i2")


def encode(samples: np.ndarray, fmt: AudioFormat, rate: int = OUTPUT_RATE) -> bytes:
    """Encode float32 mono samples in [-1, 1] as `fmt`."""
    if fmt.container is None:
        return to_pcm16(samples).tobytes()
    buf = io.BytesIO()
    # Lossy codecs take float input directly; integer subtypes get clipped PCM.
    data = to_pcm16(samples) if fmt.subtype == "PCM_16" else np.clip(samples, -1.0, 1.0)
    sf.write(buf, data, rate, format=fmt.container, subtype=fmt.subtype)
    return buf.getvalue()


def decode_prompt_audio(b64: str) -> bytes:
    """Decode and validate a base64 WAV/FLAC reference clip; return its bytes."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPromptAudioError("prompt_audio is not valid base64.") from exc
    return validate_prompt_audio(raw)


def validate_prompt_audio(raw: bytes, what: str = "prompt_audio") -> bytes:
    """Check a reference clip is WAV/FLAC, >= 16 kHz and <= 30 s; return it unchanged."""
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise InvalidPromptAudioError(f"{what} must be a WAV or FLAC file.") from exc
    if info.format not in ("WAV", "FLAC"):
        raise InvalidPromptAudioError(f"{what} must be WAV or FLAC, got {info.format}.")
    if info.samplerate < PROMPT_MIN_RATE:
        raise InvalidPromptAudioError(
            f"{what} must be sampled at >= {PROMPT_MIN_RATE} Hz, got {info.samplerate} Hz."
        )
    if info.frames / info.samplerate > MAX_PROMPT_AUDIO_SECONDS:
        raise InvalidPromptAudioError(
            f"{what} must be at most {MAX_PROMPT_AUDIO_SECONDS:g} s long, "
            f"got {info.frames / info.samplerate:.1f} s."
        )
    if info.frames == 0:
        raise InvalidPromptAudioError(f"{what} is empty.")
    return raw
