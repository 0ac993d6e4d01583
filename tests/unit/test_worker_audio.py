"""Worker audio: encoders round-trip through soundfile, resampling, prompt-clip validation."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf

from tts_backends import audio
from tts_backends.errors import InvalidPromptAudioError, UnsupportedFormatError


def tone(seconds: float = 0.5, rate: int = audio.OUTPUT_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("name", ["wav", "flac"])
def test_container_formats_round_trip_at_24k(name: str) -> None:
    samples = tone()
    data = audio.encode(samples, audio.lookup_format(name))
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24_000
    assert decoded.ndim == 1
    assert decoded.size == samples.size
    assert np.max(np.abs(decoded - samples)) < 1e-3


def test_pcm_is_raw_int16_little_endian_mono() -> None:
    samples = tone(0.25)
    data = audio.encode(samples, audio.lookup_format("pcm"))
    assert len(data) == samples.size * 2
    decoded, rate = sf.read(
        io.BytesIO(data),
        format="RAW",
        subtype="PCM_16",
        endian="LITTLE",
        samplerate=24_000,
        channels=1,
        dtype="float32",
    )
    assert rate == 24_000
    assert np.max(np.abs(decoded - samples)) < 1e-3


def test_encoding_clips_out_of_range_samples() -> None:
    data = audio.encode(np.array([2.0, -2.0, 0.0], dtype=np.float32), audio.lookup_format("pcm"))
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32767, 0]


@pytest.mark.parametrize("name", ["mp3", "opus"])
def test_lossy_formats_when_libsndfile_writes_them(name: str) -> None:
    if name not in audio.supported_formats():
        pytest.skip(f"this libsndfile cannot write {name}")
    data = audio.encode(tone(1.0), audio.lookup_format(name))
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24_000
    # Codec delay and padding change the length a little, never the duration much.
    assert abs(decoded.size / rate - 1.0) < 0.1


def test_unknown_format_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        audio.lookup_format("aac")
    assert info.value.param == "response_format"
    for name in ("wav", "pcm", "flac"):
        assert name in info.value.message


def test_resample_22050_to_24000_keeps_duration_and_pitch() -> None:
    src = tone(1.0, rate=22_050)
    out = audio.resample(src, 22_050)
    assert out.dtype == np.float32
    assert out.size == 24_000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 24_000 / out.size - 330) < 2


def test_resample_same_rate_is_identity() -> None:
    src = tone(0.1)
    assert np.array_equal(audio.resample(src, 24_000), src)


def test_prompt_audio_accepts_a_16k_wav_and_a_flac() -> None:
    for fmt in ("WAV", "FLAC"):
        raw = wav_bytes(tone(2.0, 16_000), 16_000, fmt)
        assert audio.decode_prompt_audio(base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (wav_bytes(tone(1.0, 8_000), 8_000), "16000 Hz"),
        (wav_bytes(tone(31.0, 16_000), 16_000), "30 s"),
        (b"definitely not audio", "WAV or FLAC"),
    ],
)
def test_prompt_audio_rejections_name_the_problem(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidPromptAudioError) as info:
        audio.decode_prompt_audio(base64.b64encode(raw).decode())
    assert needle in info.value.message
    assert info.value.param == "prompt_audio"
    assert info.value.status == 400


def test_prompt_audio_rejects_bad_base64() -> None:
    with pytest.raises(InvalidPromptAudioError, match="base64"):
        audio.decode_prompt_audio("not base64!!")
