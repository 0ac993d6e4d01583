"""Voice mapping: OpenAI names and engine voice ids resolve to engine voices; unknown is 400."""

from __future__ import annotations

import pytest

from tests.fakes.fake_engine import FakeToneEngine
from tts_backends.engines.base import OPENAI_VOICES, cycle_aliases
from tts_backends.engines.espeak import EspeakEngine, parse_voices
from tts_backends.errors import UnknownVoiceError
from tts_backends.voices import resolve_voice

LISTING = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 5  cmn   --/M  Chinese_(Mandarin,_latin_as_English) sit/cmn  (zh-cmn 5)(zh 5)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  yue             --/M      Chinese_(Cantonese) sit/yue              (zh-yue 5)(zh 8)
 5  yue   --/M  Chinese_(Cantonese,_latin_as_Jyutping) sit/yue-Latn-jyutping (zh-yue 5)
"""


def test_parse_espeak_voice_listing() -> None:
    voices = parse_voices(LISTING)
    assert [v.id for v in voices] == ["af", "cmn", "en-us", "yue"]
    assert voices[1].name == "Chinese (Mandarin, latin as English)"
    assert voices[2].language == "en-us"


def test_every_openai_voice_is_aliased() -> None:
    aliases = cycle_aliases(["a", "b", "c"])
    assert set(aliases) == set(OPENAI_VOICES)
    assert {"alloy", "marin", "cedar", "verse"} <= set(aliases)
    assert aliases["alloy"] == "a" and aliases["ash"] == "b" and aliases["ballad"] == "c"
    assert cycle_aliases([]) == {}


def test_resolve_openai_alias_and_own_voice() -> None:
    engine = FakeToneEngine()
    assert resolve_voice(engine, "alloy") == "tone-a"
    assert resolve_voice(engine, "ash") == "tone-b"
    assert resolve_voice(engine, "tone-b") == "tone-b"


def test_unknown_voice_is_a_400_on_param_voice() -> None:
    with pytest.raises(UnknownVoiceError) as info:
        resolve_voice(FakeToneEngine(), "nobody")
    assert info.value.status == 400
    assert info.value.param == "voice"
    assert "nobody" in info.value.message and "tone-a" in info.value.message


async def test_espeak_aliases_land_on_english_voices() -> None:
    engine = EspeakEngine()
    await engine.load()
    ids = {v.id for v in engine.voices()}
    assert "en-us" in ids and len(ids) > 50
    aliases = engine.openai_aliases()
    assert set(aliases) == set(OPENAI_VOICES)
    assert aliases["alloy"] == "en-us"
    assert all(v.startswith("en") and v in ids for v in aliases.values())


async def test_espeak_refuses_a_registered_voice_naming_voice() -> None:
    from tts_backends.engines.base import ClonedVoice, SynthesisRequest
    from tts_backends.errors import BadRequestError

    engine = EspeakEngine()
    await engine.load()
    cloned = ClonedVoice(id="voice_0123456789ab", prompt_wav=b"RIFF", prompt_text="hi")
    with pytest.raises(BadRequestError) as info:
        await engine.synthesize(SynthesisRequest(text="Hi.", voice="en-us", cloned=cloned))
    assert info.value.status == 400 and info.value.param == "voice"
    assert "voice_0123456789ab" in info.value.message
