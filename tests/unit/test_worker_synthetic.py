"""The synthetic engine: deterministic, length follows text and speed, CosyVoice3-shaped stages."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tts_backends.engines.base import SynthesisRequest
from tts_backends.engines.synthetic import SyntheticEngine
from tts_backends.engines.synthetic_model import BOS, HOP, N_MELS, SPEECH_VOCAB, token_count

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
async def engine() -> SyntheticEngine:
    e = SyntheticEngine(device="cpu", seed=0)
    await e.load()
    return e


def req(text: str = TEXT, voice: str = "synthetic-1", speed: float = 1.0) -> SynthesisRequest:
    return SynthesisRequest(text=text, voice=voice, speed=speed)


async def test_same_request_gives_identical_samples(engine: SyntheticEngine) -> None:
    a = await engine.synthesize(req())
    b = await engine.synthesize(req())
    assert a.dtype == np.float32 and a.ndim == 1
    assert np.array_equal(a, b)


async def test_fresh_engine_with_same_seed_gives_identical_samples(engine) -> None:
    other = SyntheticEngine(seed=0)
    await other.load()
    assert np.array_equal(await engine.synthesize(req()), await other.synthesize(req()))
    reseeded = SyntheticEngine(seed=1)
    await reseeded.load()
    assert not np.array_equal(await engine.synthesize(req()), await reseeded.synthesize(req()))


async def test_voice_and_text_change_the_audio(engine: SyntheticEngine) -> None:
    base = await engine.synthesize(req())
    assert not np.array_equal(base, await engine.synthesize(req(voice="synthetic-2")))
    assert not np.array_equal(base, await engine.synthesize(req(text=TEXT.upper())))


async def test_length_follows_text_and_speed(engine: SyntheticEngine) -> None:
    short = await engine.synthesize(req("a" * 20))
    long = await engine.synthesize(req("a" * 100))
    fast = await engine.synthesize(req("a" * 100, speed=2.0))
    assert long.size > 4 * short.size
    # ~0.08 s of audio per character at 24 kHz.
    assert long.size / 24_000 == pytest.approx(8.0, rel=0.01)
    assert fast.size / long.size == pytest.approx(0.5, rel=0.02)


async def test_output_is_in_range_and_not_silent(engine: SyntheticEngine) -> None:
    out = await engine.synthesize(req())
    assert 0.1 < np.max(np.abs(out)) <= 1.0
    assert np.std(out) > 0.01


async def test_stages_have_cosyvoice3_shapes(engine: SyntheticEngine) -> None:
    model = engine._model
    assert model is not None
    n = token_count(11, 1.0)
    assert n == 22  # 25 tokens/s
    aligned = model.encode_text("hello world", n)
    state, speaker_mel = model.speaker(0)
    prev = torch.full((1,), BOS)
    tokens = []
    for t in range(n):
        token, states = model.lm_step(prev, aligned[t : t + 1], state[None], torch.rand(1))
        prev, state = token, states[0]
        tokens.append(int(token))
    assert max(tokens) < SPEECH_VOCAB
    mel = model.tokens_to_mel(torch.tensor([tokens]), speaker_mel[None])
    assert mel.shape == (1, N_MELS, 44)  # 50 frames/s
    wave = model.vocode(mel)
    assert wave.shape == (1, 44 * HOP)  # 24 kHz


async def test_a_100_char_input_is_fast_on_cpu(engine: SyntheticEngine) -> None:
    await engine.synthesize(req("warm"))
    started = time.perf_counter()
    await engine.synthesize(req("x" * 100))
    assert time.perf_counter() - started < 1.0


async def test_unknown_voice_is_rejected(engine: SyntheticEngine) -> None:
    from tts_backends.errors import UnknownVoiceError

    with pytest.raises(UnknownVoiceError):
        await engine.synthesize(req(voice="en-us"))


def test_sizes_are_named_and_checked() -> None:
    assert SyntheticEngine(size="0.5b").size == "0.5b"
    with pytest.raises(ValueError, match="unknown synthetic size"):
        SyntheticEngine(size="7b")
