"""Cache keys and the stored form of a response."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from ttsgw_contract.cache import CachedResponse
from ttsgw_contract.cache_keys import canonical_request, entry_pattern, request_key, stats_key
from ttsgw_contract.speech import SpeechRequest


def _canonical(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        model="espeak",
        voice="alloy",
        input="Hello there.",
        response_format="wav",
        speed=1.0,
        instructions=None,
        stream_format="audio",
        prompt_audio=None,
        prompt_text=None,
    )
    base.update(overrides)
    return canonical_request(**base)  # type: ignore[arg-type]


def test_key_layout_is_the_contract() -> None:
    canonical = _canonical()
    key = request_key("espeak", "5f2a9c01", canonical)
    prefix, digest = key.rsplit(":", 1)
    assert prefix == "ttsgw:cache:v1:espeak:5f2a9c01"
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_same_canonical_gives_same_key_whatever_the_dict_order() -> None:
    canonical = _canonical()
    reordered = dict(reversed(list(canonical.items())))
    assert list(reordered) != list(canonical)
    assert request_key("espeak", "g1", canonical) == request_key("espeak", "g1", reordered)


def test_speed_as_int_or_float_is_the_same_request() -> None:
    assert request_key("m", "g", _canonical(speed=1)) == request_key(
        "m", "g", _canonical(speed=1.0)
    )


CHANGES = [
    ("model", "cosyvoice3"),
    ("voice", "echo"),
    ("input", "Hello there!"),
    ("response_format", "flac"),
    ("speed", 1.25),
    ("instructions", "请用四川话表达。"),
    ("stream_format", "sse"),
    ("prompt_audio", b"RIFF....WAVE"),
    ("prompt_text", "a transcript"),
]


def test_the_changes_below_cover_every_field_of_the_request() -> None:
    assert {field for field, _ in CHANGES} == set(SpeechRequest.model_fields)


@pytest.mark.parametrize("field, value", CHANGES)
def test_any_field_change_changes_the_key(field: str, value: object) -> None:
    base = request_key("espeak", "g1", _canonical())
    assert request_key("espeak", "g1", _canonical(**{field: value})) != base


def test_generation_change_changes_the_key() -> None:
    canonical = _canonical()
    assert request_key("espeak", "g1", canonical) != request_key("espeak", "g2", canonical)


def test_prompt_audio_enters_as_the_hash_of_the_decoded_bytes() -> None:
    audio = b"\x00\x01" * 1000
    canonical = _canonical(prompt_audio=audio)
    assert canonical["prompt_audio_sha256"] == hashlib.sha256(audio).hexdigest()
    assert "prompt_audio" not in canonical
    assert _canonical()["prompt_audio_sha256"] is None


def test_non_ascii_input_is_hashed_stably() -> None:
    key1 = request_key("m", "g", _canonical(input="你好，世界"))
    key2 = request_key("m", "g", _canonical(input="你好，世界"))
    assert key1 == key2 != request_key("m", "g", _canonical(input="你好,世界"))


def test_keys_did_not_move_when_the_schema_moved_to_the_contract() -> None:
    # Pinned from the field-by-field canonical form: a moved key is a cold cache fleet-wide.
    assert request_key("espeak", "g1", _canonical()) == (
        "ttsgw:cache:v1:espeak:g1:f66a0510eaec9423baa2f17e1eea52ff4dabbb6c2524b00a0e68fec237900734"
    )
    changed = _canonical(prompt_audio=b"RIFF", instructions="请", input="你好", speed=2)
    assert request_key("espeak", "g1", changed).endswith(
        "806565aff70a1bdbc21cf6ac599c37a4b77aa64da89ecd52c94b588474e4f6f7"
    )


def test_a_request_and_its_fields_give_the_same_canonical_form() -> None:
    request = SpeechRequest(model="espeak", input="hi", speed=0.5, prompt_audio=b"")
    assert canonical_request(request) == canonical_request(**dict(request))
    assert canonical_request(request)["prompt_audio_sha256"] == hashlib.sha256(b"").hexdigest()


def test_a_misspelt_field_raises_instead_of_sharing_an_entry() -> None:
    with pytest.raises(ValidationError):
        canonical_request(model="espeak", input="hi", sped=2.0)


def test_a_key_is_computed_even_for_text_no_parser_would_pass() -> None:
    # model_construct skips validation: the key must still not be what raises.
    odd = SpeechRequest.model_construct(
        model="espeak", input="\ud800", voice="\udfff", instructions="a\udc00"
    )
    key = request_key("espeak", "g1", canonical_request(odd))
    assert key != request_key(
        "espeak", "g1", canonical_request(odd.model_copy(update={"input": "x"}))
    )


def test_patterns_scope_one_model_or_all() -> None:
    assert entry_pattern("espeak") == "ttsgw:cache:v1:espeak:*"
    assert entry_pattern() == "ttsgw:cache:v1:*:*"
    assert entry_pattern("we*rd?") == "ttsgw:cache:v1:we\\*rd\\?:*"
    assert stats_key("espeak") == "ttsgw:cache:stats:espeak"


@pytest.mark.parametrize(
    "response",
    [
        CachedResponse(
            body=b"RIFF\x00\n\x00binary\nwith newlines", content_type="audio/wav", backend="espeak"
        ),
        CachedResponse(body=b"", content_type="audio/pcm", backend="cosyvoice3"),
        CachedResponse(body=bytes(range(256)) * 40, content_type="audio/mpeg", backend="b\n2"),
    ],
)
def test_encode_decode_round_trip(response: CachedResponse) -> None:
    assert CachedResponse.decode(response.encode()) == response
