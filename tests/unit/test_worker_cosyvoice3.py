"""The CosyVoice3 adapter against a FAKE `cosyvoice` module (no weights here)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fakes import fake_cosyvoice
from tts_backends.engines.base import ClonedVoice, SynthesisRequest
from tts_backends.engines.cosyvoice3 import CosyVoice3Engine, instruct_prompt, zero_shot_prompt
from tts_backends.engines.text_split import split_text
from tts_backends.errors import EngineLoadError, SynthesisError, UnknownVoiceError
from tts_backends.lifecycle import EngineLifecycle

PREFIX = "You are a helpful assistant.<|endofprompt|>"


def clip(rate: int = 16_000, seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(rate * seconds), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[fake_cosyvoice.FakeAutoModel]:
    return fake_cosyvoice.install(monkeypatch)


@pytest.fixture
def voices_dir(tmp_path: Path) -> Path:
    d = tmp_path / "voices"
    d.mkdir()
    (d / "lin.wav").write_bytes(clip())
    (d / "lin.txt").write_text("希望你以后能够做的比我还好呦。\n", encoding="utf-8")
    (d / "amy.wav").write_bytes(clip(24_000))
    (d / "amy.txt").write_text("Hello there.", encoding="utf-8")
    return d


@pytest.fixture
async def engine(fake, voices_dir: Path, tmp_path: Path) -> CosyVoice3Engine:
    e = CosyVoice3Engine(model_dir=tmp_path, voices_dir=voices_dir)
    await e.load()
    return e


def calls(fake) -> list[tuple[str, dict]]:
    return [c for c in fake.instances[-1].calls if c[0] != "add_zero_shot_spk"]


async def test_load_registers_each_reference_voice(engine, fake, voices_dir, tmp_path) -> None:
    model = fake.instances[-1]
    assert model.model_dir == str(tmp_path)
    added = [c[1] for c in model.calls if c[0] == "add_zero_shot_spk"]
    assert [a["zero_shot_spk_id"] for a in added] == ["amy", "lin"]
    assert added[1]["prompt_text"] == PREFIX + "希望你以后能够做的比我还好呦。"
    assert added[1]["prompt_wav"] == str(voices_dir / "lin.wav")
    assert [v.id for v in engine.voices()] == ["amy", "lin"]
    assert engine.openai_aliases()["alloy"] == "amy"
    assert engine.ready and engine.sample_rate == 24_000


async def test_registered_voice_uses_zero_shot_with_spk_id(engine, fake) -> None:
    out = await engine.synthesize(SynthesisRequest(text="你好。", voice="lin"))
    [(method, kw)] = calls(fake)
    assert method == "inference_zero_shot"
    assert kw == {
        "tts_text": "你好。",
        "prompt_text": "",
        "prompt_wav": "",
        "zero_shot_spk_id": "lin",
        "stream": False,
        "speed": 1.0,
    }
    assert out.dtype == np.float32
    assert out.size == 3 * fake_cosyvoice.SAMPLES_PER_CHAR


async def test_prompt_audio_with_text_is_zero_shot(engine, fake) -> None:
    wav = clip()
    await engine.synthesize(
        SynthesisRequest(
            text="Clone me.", voice="alloy", prompt_wav=wav, prompt_text="my transcript", speed=1.5
        )
    )
    [(method, kw)] = calls(fake)
    assert method == "inference_zero_shot"
    assert kw["prompt_text"] == PREFIX + "my transcript"
    assert kw["prompt_wav"] == wav
    assert (kw["zero_shot_spk_id"], kw["stream"], kw["speed"]) == ("", False, 1.5)


async def test_prompt_audio_without_text_is_cross_lingual(engine, fake) -> None:
    wav = clip()
    await engine.synthesize(SynthesisRequest(text="Bonjour.", voice="x", prompt_wav=wav))
    [(method, kw)] = calls(fake)
    assert method == "inference_cross_lingual"
    assert kw["tts_text"] == PREFIX + "Bonjour."
    assert kw["prompt_wav"] == wav


async def test_instructions_use_instruct2_with_the_voice_clip(engine, fake, voices_dir) -> None:
    await engine.synthesize(
        SynthesisRequest(text="好少咯。", voice="lin", instructions="请用广东话表达。", speed=0.8)
    )
    [(method, kw)] = calls(fake)
    assert method == "inference_instruct2"
    assert kw["instruct_text"] == "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"
    assert kw["prompt_wav"] == str(voices_dir / "lin.wav")
    assert (kw["stream"], kw["speed"]) == (False, 0.8)


async def test_instructions_prefer_prompt_audio(engine, fake) -> None:
    wav = clip()
    await engine.synthesize(
        SynthesisRequest(text="Hi.", voice="nobody", instructions="Whisper.", prompt_wav=wav)
    )
    [(method, kw)] = calls(fake)
    assert method == "inference_instruct2" and kw["prompt_wav"] == wav


async def test_instructions_without_a_voice_or_clip_are_rejected(engine) -> None:
    with pytest.raises(UnknownVoiceError):
        await engine.synthesize(SynthesisRequest(text="Hi.", voice="nobody", instructions="x"))


async def test_unknown_voice_without_prompt_audio_is_rejected(engine) -> None:
    with pytest.raises(UnknownVoiceError) as info:
        await engine.synthesize(SynthesisRequest(text="Hi.", voice="nobody"))
    assert info.value.param == "voice"


async def test_long_text_is_split_and_concatenated(engine, fake) -> None:
    sentence = "This is a sentence of moderate length that goes on for a while. "
    text = sentence * 8  # ~520 chars
    out = await engine.synthesize(SynthesisRequest(text=text, voice="amy"))
    sent = [kw["tts_text"] for _, kw in calls(fake)]
    assert len(sent) == 3
    assert all(len(t) <= 200 for t in sent)
    assert all(t.endswith(".") for t in sent)
    assert " ".join(sent) == text.strip()
    assert out.size == sum(len(t) for t in sent) * fake_cosyvoice.SAMPLES_PER_CHAR


async def test_markup_passes_through_untouched(engine, fake) -> None:
    text = "高管也通过电话对报道[j][ǐ]予好评。[M][AY0][N][UW1][T] is a minute."
    await engine.synthesize(SynthesisRequest(text=text, voice="lin"))
    joined = "".join(kw["tts_text"] for _, kw in calls(fake))
    assert "[j][ǐ]" in joined and "[M][AY0][N][UW1][T]" in joined


def test_split_never_cuts_inside_markup() -> None:
    text = "[M][AY0][N][UW1][T] " * 40
    pieces = split_text(text, 50)
    assert len(pieces) > 1
    for p in pieces:
        assert len(p) <= 50
        assert p.count("[") == p.count("]")
        assert p.replace("[M][AY0][N][UW1][T]", "").strip() == ""


def test_split_on_cjk_and_latin_sentence_ends_and_newlines() -> None:
    assert split_text("第一句。第二句！第三句？", 4) == ["第一句。", "第二句！", "第三句？"]
    assert split_text("One. Two!\nThree?", 6) == ["One.", "Two!", "Three?"]
    # A decimal point is not a sentence end.
    assert split_text("Pi is 3.14 today.", 8) == ["Pi is", "3.14", "today."]
    assert split_text("short text", 200) == ["short text"]
    assert split_text("   ", 200) == []


def test_split_hard_cuts_text_without_pauses() -> None:
    pieces = split_text("a" * 450, 200)
    assert [len(p) for p in pieces] == [200, 200, 50]


def test_prompt_formats() -> None:
    assert zero_shot_prompt("abc") == PREFIX + "abc"
    expected = "You are a helpful assistant. Speak fast.<|endofprompt|>"
    assert instruct_prompt("Speak fast.") == expected
    custom = "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"
    assert instruct_prompt(custom) == custom


async def test_load_errors_are_one_line(fake, tmp_path: Path) -> None:
    with pytest.raises(EngineLoadError, match="does not exist"):
        await CosyVoice3Engine(model_dir=tmp_path / "missing").load()
    bad = tmp_path / "bad_voices"
    bad.mkdir()
    (bad / "v.wav").write_bytes(clip())
    with pytest.raises(EngineLoadError, match="transcript"):
        await CosyVoice3Engine(model_dir=tmp_path, voices_dir=bad).load()
    (bad / "v.txt").write_text("hi")
    (bad / "v.wav").write_bytes(clip(rate=8_000))
    with pytest.raises(EngineLoadError, match="16000 Hz"):
        await CosyVoice3Engine(model_dir=tmp_path, voices_dir=bad).load()


async def test_missing_cosyvoice_package_is_a_load_error(monkeypatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cosyvoice", None)
    with pytest.raises(EngineLoadError, match="CosyVoice package is not importable"):
        await CosyVoice3Engine(model_dir=tmp_path).load()


# --- registry voices (req.cloned), warm-up, every mode ------------------------------


def cloned(voice_id: str = "voice_0123456789ab", text: str = "Reference words.") -> ClonedVoice:
    return ClonedVoice(id=voice_id, prompt_wav=clip(seconds=0.5), prompt_text=text)


def registrations(fake) -> list[dict]:
    return [kw for name, kw in fake.instances[-1].calls if name == "add_zero_shot_spk"]


async def test_a_registry_voice_is_registered_once_then_used_by_id(engine, fake) -> None:
    voice = cloned()
    req = SynthesisRequest(text="First. Second.", voice=voice.id, cloned=voice)
    await engine.synthesize(req)
    await engine.synthesize(req)
    added = [r for r in registrations(fake) if r["zero_shot_spk_id"] == voice.id]
    assert added == [
        {
            "prompt_text": PREFIX + "Reference words.",
            "prompt_wav": voice.prompt_wav,
            "zero_shot_spk_id": voice.id,
        }
    ]
    assert [kw["zero_shot_spk_id"] for _, kw in calls(fake)] == [voice.id, voice.id]
    assert all(m == "inference_zero_shot" for m, _ in calls(fake))
    assert voice.id in fake.instances[-1].frontend.spk2info
    assert engine.registered_clones() == [voice.id]


async def test_registered_clones_are_bounded_least_recently_used_first(fake, tmp_path) -> None:
    engine = CosyVoice3Engine(model_dir=tmp_path, max_cloned_voices=2)
    await engine.load()
    a, b, c = (cloned(f"voice_00000000000{i}") for i in "abc")
    for voice in (a, b, a, c):  # a is used again after b, so b is the oldest when c comes
        await engine.synthesize(SynthesisRequest(text="Hi.", voice=voice.id, cloned=voice))
    assert engine.registered_clones() == [a.id, c.id]
    spk2info = fake.instances[-1].frontend.spk2info
    assert set(spk2info) == {a.id, c.id}  # b's features were dropped from the model
    await engine.synthesize(SynthesisRequest(text="Hi.", voice=b.id, cloned=b))
    assert [r["zero_shot_spk_id"] for r in registrations(fake)] == [a.id, b.id, c.id, b.id]
    assert engine.registered_clones() == [c.id, b.id]


async def test_a_registry_voice_with_instructions_uses_instruct2_and_its_clip(engine, fake) -> None:
    voice = cloned()
    await engine.synthesize(
        SynthesisRequest(
            text="慢一点说。",
            voice=voice.id,
            cloned=voice,
            instructions="请用四川话表达。",
            speed=0.7,
        )
    )
    [(method, kw)] = calls(fake)
    assert method == "inference_instruct2"
    assert kw["instruct_text"] == "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"
    assert kw["prompt_wav"] == voice.prompt_wav
    assert (kw["zero_shot_spk_id"], kw["speed"], kw["stream"]) == ("", 0.7, False)
    assert registrations(fake)[2:] == []  # nothing registered for instruct mode


async def test_the_requests_own_clip_beats_a_registry_voice(engine, fake) -> None:
    voice, own = cloned(), clip(seconds=0.25)
    req = SynthesisRequest(
        text="Mine.", voice=voice.id, cloned=voice, prompt_wav=own, prompt_text="own words"
    )
    await engine.synthesize(req)
    [(method, kw)] = calls(fake)
    assert method == "inference_zero_shot" and kw["prompt_wav"] == own
    assert kw["prompt_text"] == PREFIX + "own words" and kw["zero_shot_spk_id"] == ""
    assert engine.registered_clones() == []


async def test_cross_lingual_keeps_speed_and_splits_with_the_prefix(fake, tmp_path) -> None:
    engine = CosyVoice3Engine(model_dir=tmp_path, max_piece_chars=25)
    await engine.load()
    wav = clip()
    await engine.synthesize(
        SynthesisRequest(
            text="Bonjour tout le monde. Comment allez-vous?", voice="x", prompt_wav=wav, speed=1.25
        )
    )
    sent = calls(fake)
    assert [m for m, _ in sent] == ["inference_cross_lingual"] * 2
    assert [kw["tts_text"] for _, kw in sent] == [
        PREFIX + "Bonjour tout le monde.",
        PREFIX + "Comment allez-vous?",
    ]
    assert all(kw["speed"] == 1.25 and kw["stream"] is False for _, kw in sent)


async def test_split_markup_reaches_the_model_whole(fake, tmp_path, voices_dir) -> None:
    engine = CosyVoice3Engine(model_dir=tmp_path, voices_dir=voices_dir, max_piece_chars=30)
    await engine.load()
    word = "[M][AY0][N][UW1][T]"
    text = "高管也通过电话对报道[j][ǐ]予好评，" + " ".join([word] * 6) + " 好[h][ào]。"
    await engine.synthesize(SynthesisRequest(text=text, voice="lin"))
    pieces = [kw["tts_text"] for _, kw in calls(fake)]
    assert len(pieces) > 2
    for piece in pieces:
        # Every bracket in a piece closes in it: no markup unit was cut in two.
        assert piece.count("[") == piece.count("]")
        for unit in re.findall(r"\[[^\]]*\]", piece):
            assert unit in text
    joined = "".join(pieces)
    assert joined.count(word) == 6 and "[j][ǐ]" in joined and "[h][ào]" in joined


async def test_warm_up_without_voices_runs_the_model_on_a_generated_clip(fake, tmp_path) -> None:
    engine = CosyVoice3Engine(model_dir=tmp_path)
    lifecycle = EngineLifecycle(engine)
    await lifecycle.start()
    assert lifecycle.ready and lifecycle.error is None
    [(method, kw)] = calls(fake)
    assert method == "inference_cross_lingual"
    info = sf.info(io.BytesIO(kw["prompt_wav"]))
    assert info.samplerate >= 16_000 and 0 < info.duration <= 30


async def test_warm_up_with_voices_speaks_with_the_first(engine, fake) -> None:
    await engine.warm_up()
    [(method, kw)] = calls(fake)
    assert method == "inference_zero_shot" and kw["zero_shot_spk_id"] == "amy"


async def test_a_refused_registration_is_a_synthesis_error(engine, fake, monkeypatch) -> None:
    monkeypatch.setattr(fake.instances[-1], "add_zero_shot_spk", lambda *a: False)
    voice = cloned()
    with pytest.raises(SynthesisError, match="refused"):
        await engine.synthesize(SynthesisRequest(text="Hi.", voice=voice.id, cloned=voice))
    assert engine.registered_clones() == []


async def test_stream_hands_over_each_piece_as_the_model_makes_it(engine, fake) -> None:
    text = "This is a sentence of moderate length that goes on for a while. " * 8
    pieces = [p async for p in engine.stream(SynthesisRequest(text=text, voice="amy"))]
    sent = [kw["tts_text"] for _, kw in calls(fake)]
    assert [p.size for p in pieces] == [len(t) * fake_cosyvoice.SAMPLES_PER_CHAR for t in sent]


async def test_a_consumer_that_leaves_stops_the_model_before_the_next_piece(engine, fake) -> None:
    text = "This is a sentence of moderate length that goes on for a while. " * 8
    model = fake.instances[-1]
    original = model.inference_zero_shot
    started = []

    def slow_first_piece(*args, **kwargs):
        # The first call lingers after its output, as a real model finishing up would;
        # meanwhile the client leaves, so the second call must never start.
        started.append(1)
        yield from original(*args, **kwargs)
        if len(started) == 1:
            time.sleep(0.3)

    model.inference_zero_shot = slow_first_piece
    stream = engine.stream(SynthesisRequest(text=text, voice="amy"))
    first = await anext(stream)
    await stream.aclose()  # the client went away after the first piece
    assert first.size > 0
    assert len(started) == 1
    # The engine is free again at once.
    again = await engine.synthesize(SynthesisRequest(text="Short.", voice="amy"))
    assert again.size == len("Short.") * fake_cosyvoice.SAMPLES_PER_CHAR
