"""The speech body parser on its own: every field, every limit, every rejection's status."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import soundfile

from gateway.errors import InvalidRequestError, PayloadTooLargeError, RequestRejected
from gateway.speech import parse_speech_request
from tts_backends.schemas import SpeechRequest as WorkerSpeechRequest
from ttsgw_contract.limits import MAX_SPEED, MIN_SPEED, SpeechLimits
from ttsgw_contract.speech import SpeechBody


def wav(seconds: float = 1.0, rate: int = 16_000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    samples = np.zeros(int(seconds * rate), dtype=np.float32)
    soundfile.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse(body: dict | bytes, limits: SpeechLimits | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_speech_request(raw, limits)


def rejected(body: dict | bytes, limits: SpeechLimits | None = None) -> RequestRejected:
    with pytest.raises(RequestRejected) as err:
        parse(body, limits)
    return err.value


def test_defaults_match_the_workers():
    request = parse({"model": "espeak", "input": "hi"})
    assert (request.voice, request.response_format, request.speed) == ("alloy", "wav", 1.0)
    assert (request.stream_format, request.instructions, request.prompt_audio) == (
        "audio",
        None,
        None,
    )


def test_every_field_and_unknown_extras_are_ignored():
    clip = wav(2.0, 24_000, "FLAC")
    request = parse(
        {
            "model": "cosyvoice3",
            "input": "你好",
            "voice": "nova",
            "response_format": "opus",
            "speed": 2,
            "instructions": "speak slowly",
            "stream_format": "sse",
            "prompt_audio": b64(clip),
            "prompt_text": "transcript",
            "extra_body_field": {"anything": [1, 2]},
        }
    )
    assert request.speed == 2.0 and isinstance(request.speed, float)
    assert request.prompt_audio == clip
    assert (request.response_format, request.stream_format) == ("opus", "sse")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"{nope", None),
        (b"[1, 2]", None),
        (b"\xff\xfe\x00", None),
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": 7, "input": "x"}, "model"),
        ({"model": " ", "input": "x"}, "model"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": ["x"]}, "input"),
        ({"model": "m", "input": "x", "voice": 3}, "voice"),
        ({"model": "m", "input": "x", "response_format": "aac"}, "response_format"),
        ({"model": "m", "input": "x", "stream_format": "ws"}, "stream_format"),
        ({"model": "m", "input": "x", "speed": "fast"}, "speed"),
        ({"model": "m", "input": "x", "speed": True}, "speed"),
        ({"model": "m", "input": "x", "speed": 0.1}, "speed"),
        ({"model": "m", "input": "x", "speed": 4.5}, "speed"),
        ({"model": "m", "input": "x", "speed": 10**400}, "speed"),
        ({"model": "m", "input": "x", "instructions": 1}, "instructions"),
        ({"model": "m", "input": "x", "prompt_text": "t"}, "prompt_text"),
        ({"model": "m", "input": "x", "prompt_audio": "not base64!"}, "prompt_audio"),
        ({"model": "m", "input": "x", "prompt_audio": b64(b"RIFF garbage")}, "prompt_audio"),
        ({"model": "m", "input": "x", "prompt_audio": b64(wav(1.0, 8_000))}, "prompt_audio"),
        ({"model": "m", "input": "x", "prompt_audio": b64(wav(31.0))}, "prompt_audio"),
        ({"model": "m", "input": "x", "prompt_audio": b64(wav(0.0))}, "prompt_audio"),
    ],
)
def test_bad_bodies_are_400_naming_the_param(body, param):
    error = rejected(body)
    assert isinstance(error, InvalidRequestError) and error.status == 400
    assert error.param == param
    assert error.message


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_speed_is_400(literal):
    error = rejected(b'{"model": "m", "input": "x", "speed": ' + literal + b"}")
    assert (error.status, error.param) == (400, "speed")


def test_too_long_input_is_413_with_the_configured_limit():
    limits = SpeechLimits(max_input_chars=10)
    assert parse({"model": "m", "input": "é" * 10}, limits).input == "é" * 10
    error = rejected({"model": "m", "input": "é" * 11}, limits)
    assert isinstance(error, PayloadTooLargeError)
    assert (error.status, error.param, error.code) == (413, "input", "input_too_long")
    assert "10" in error.message


def test_prompt_audio_limits_come_from_the_config():
    clip = wav(3.0)
    small = SpeechLimits(max_prompt_audio_bytes=len(clip) - 1)
    error = rejected({"model": "m", "input": "x", "prompt_audio": b64(clip)}, small)
    assert (error.status, error.param) == (413, "prompt_audio")
    short = SpeechLimits(max_prompt_audio_seconds=2.0)
    error = rejected({"model": "m", "input": "x", "prompt_audio": b64(clip)}, short)
    assert (error.status, error.param) == (400, "prompt_audio") and "2 s" in error.message
    speeds = SpeechLimits(min_speed=0.5, max_speed=2.0)
    assert rejected({"model": "m", "input": "x", "speed": 0.3}, speeds).param == "speed"
    assert parse({"model": "m", "input": "x", "speed": 0.3}).speed == 0.3


def test_a_huge_base64_prompt_is_refused_before_decoding():
    limits = SpeechLimits(max_prompt_audio_bytes=1000)
    error = rejected({"model": "m", "input": "x", "prompt_audio": "A" * 100_000}, limits)
    assert error.status == 413


# Lone surrogates as JSON escapes, and as the raw CESU-8 bytes that json.loads lets through.
SURROGATE_SPELLINGS = [b'"\\ud800"', b'"ok \\udfff!"', b'"\\ude00\\ud83d"', b'"\xed\xa0\x80"']
TEXT_FIELDS = ["model", "input", "voice", "instructions", "prompt_text", "prompt_audio"]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("spelling", SURROGATE_SPELLINGS)
def test_unencodable_text_is_400_naming_the_field(field: str, spelling: bytes) -> None:
    fields = {"model": b'"espeak"', "input": b'"hello"', field: spelling}
    body = b"{" + b",".join(b'"%s": %s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    error = rejected(body)
    assert (error.status, error.param, error.code) == (400, field, "invalid_text")
    assert error.type == "invalid_request_error"
    # The message must itself be encodable: it goes out as the JSON error body.
    assert error.message.encode("utf-8") and "surrogate U+D" in error.message


def test_a_surrogate_pair_is_one_valid_character() -> None:
    request = parse(b'{"model": "espeak", "input": "\\ud83d\\ude00"}')
    assert request.input == "\U0001f600"


def test_invalid_utf8_bytes_are_a_json_error() -> None:
    error = rejected(b'{"model": "espeak", "input": "\xff\xfe"}')
    assert (error.status, error.param) == (400, None)


@pytest.mark.parametrize("field", ["model", "input", "voice"])
def test_blank_text_is_400(field: str) -> None:
    error = rejected({"model": "espeak", "input": "hi", field: " \t"})
    assert (error.status, error.param, error.code) == (400, field, "blank_text")


@pytest.mark.parametrize("speed", [MIN_SPEED, MAX_SPEED])
def test_the_widest_policy_allows_what_the_engines_can_do(speed: float) -> None:
    assert parse({"model": "m", "input": "x", "speed": speed}).speed == speed
    narrow = SpeechLimits(min_speed=1.0, max_speed=1.0)
    error = rejected({"model": "m", "input": "x", "speed": speed}, narrow)
    assert (error.param, error.message) == ("speed", "'speed' must be between 1 and 1.")


@pytest.mark.parametrize("speed", [MIN_SPEED - 0.001, MAX_SPEED + 0.001])
def test_beyond_the_engines_the_message_gives_the_policys_range(speed: float) -> None:
    limits = SpeechLimits(min_speed=0.5, max_speed=2.0)
    error = rejected({"model": "m", "input": "x", "speed": speed}, limits)
    assert (error.param, error.message) == ("speed", "'speed' must be between 0.5 and 2.")


def test_whatever_the_filter_passes_a_worker_accepts() -> None:
    clip = wav(1.0)
    request = parse(
        {"model": "m", "input": "é", "speed": MAX_SPEED, "prompt_audio": b64(clip), "x": 1}
    )
    wire = {**dict(request), "prompt_audio": b64(clip)}
    assert dict(WorkerSpeechRequest.model_validate(wire)) == wire
    assert WorkerSpeechRequest.model_fields.keys() == SpeechBody.model_fields.keys()
