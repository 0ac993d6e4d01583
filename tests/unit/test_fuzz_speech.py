"""Property-based fuzz of the speech body: a request or a 4xx, never anything else, never a 5xx.

Bodies include text no encoder accepts: lone surrogates, sent both as JSON ``\\udXXX``
escapes and as their raw CESU-8 bytes (which ``json.loads`` decodes to the same lone
surrogate), and raw bytes that are not UTF-8 at all, in every string field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.config_client import StaticConfigSource
from gateway.errors import RequestRejected
from gateway.speech import SpeechRequest, parse_speech_request
from tests.unit.test_ext_proc_processors import speech
from tts_backends.schemas import SpeechRequest as WorkerSpeechRequest
from ttsgw_contract.cache_keys import canonical_request, request_key
from ttsgw_contract.gateway_config import GatewayConfig, ModelRoute
from ttsgw_contract.limits import MAX_SPEED, MIN_SPEED
from ttsgw_contract.speech import SPEECH_FIELDS

STRING_FIELDS = [
    "model", "input", "voice", "response_format", "instructions",
    "stream_format", "prompt_audio", "prompt_text",
]  # fmt: skip
# Stands in for raw bytes inside a JSON string; replaced after json.dumps.
RAW = "\x00raw\x00"
RAW_JSON = json.dumps(RAW)[1:-1].encode()

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Text around one or more lone surrogates; a high one followed by a low one is a valid
# pair once JSON decodes it, so some of these are valid, and that is tested too.
unencodable = st.tuples(st.text(max_size=8), surrogates, st.text(max_size=8)).map("".join)
# Raw byte sequences that are not UTF-8: CESU-8 surrogates (json.loads passes those),
# overlongs, past U+10FFFF, truncated sequences, and any run of high bytes. None holds
# a quote or a backslash, so each stays inside its JSON string.
raw_invalid = st.one_of(
    st.sampled_from(
        [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]
    ),
    surrogates.map(lambda c: c.encode("utf-8", "surrogatepass")),
    st.binary(min_size=1, max_size=6).map(lambda b: bytes(0x80 | x for x in b)),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=MIN_SPEED - 0.01, max_value=MAX_SPEED + 0.01),
    st.text(max_size=40),
    unencodable,
    st.sampled_from(["wav", "mp3", "aac", "audio", "sse", "espeak", "UklGRg==", "\ud800", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["espeak", "cosyvoice3", "nope"]), "input": st.text(max_size=50)},
    optional={f: json_values for f in SPEECH_FIELDS[2:]},
)


def escaped(payload: object) -> bytes:
    """JSON with every non-ASCII character, lone surrogates too, as a \\uXXXX escape."""
    return json.dumps(payload).encode()


def raw(payload: object) -> bytes:
    """JSON as UTF-8 text; a lone surrogate goes out as its raw CESU-8 bytes."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")


def spliced(payload: dict[str, object], field: str, prefix: str, junk: bytes) -> bytes:
    """``payload`` with ``field`` a string holding ``junk``, raw bytes that are not UTF-8."""
    text = json.dumps({**payload, field: prefix + RAW}).encode()
    return text.replace(RAW_JSON, junk)


encoders = st.sampled_from([escaped, raw])
# One string field made unencodable in a near-valid body, either spelling.
one_bad_field = st.tuples(near_valid, st.sampled_from(STRING_FIELDS), unencodable, encoders)
# Bodies of every kind: raw bytes, any JSON, and near-valid objects with one field broken.
bodies = st.one_of(
    st.binary(max_size=200),
    st.tuples(json_values, encoders).map(lambda t: t[1](t[0])),
    st.tuples(near_valid, encoders).map(lambda t: t[1](t[0])),
    st.tuples(near_valid, st.sampled_from(SPEECH_FIELDS), json_values, encoders).map(
        lambda t: t[3]({**t[0], t[1]: t[2]})
    ),
    one_bad_field.map(lambda t: t[3]({**t[0], t[1]: t[2]})),
    st.tuples(near_valid, st.sampled_from(STRING_FIELDS), st.text(max_size=8), raw_invalid).map(
        lambda t: spliced(*t)
    ),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
)

SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_usable(request: SpeechRequest) -> None:
    """What every later stage assumes of a parsed request."""
    assert isinstance(request, SpeechRequest)
    assert request.input.strip() and request.model.strip()
    assert math.isfinite(request.speed) and MIN_SPEED <= request.speed <= MAX_SPEED
    for name, value in dict(request).items():
        if isinstance(value, str):
            value.encode("utf-8")  # raises on anything a later stage could not encode
        else:
            assert value is None or name in ("speed", "prompt_audio")
    assert request_key(request.model, "g", canonical_request(request)).count(":") == 5
    # No drift: the worker's schema takes whatever the filter passes.
    wire = dict(request)
    if request.prompt_audio is not None:
        wire["prompt_audio"] = base64.b64encode(request.prompt_audio).decode()
    assert WorkerSpeechRequest.model_validate(wire).speed == request.speed


@SETTINGS
@given(bodies)
def test_parser_returns_a_request_or_a_4xx(body: bytes) -> None:
    try:
        request = parse_speech_request(body)
    except RequestRejected as exc:
        assert 400 <= exc.status < 500
        assert exc.message and exc.message.encode("utf-8")
        return
    assert_usable(request)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(STRING_FIELDS), unencodable, encoders)
def test_unencodable_text_in_a_string_field_is_refused_naming_it(
    field: str, text: str, encode: Callable[[object], bytes]
) -> None:
    body = encode({"model": "espeak", "input": "hello", field: text})
    # JSON joins an escaped high and low surrogate into one character; raw bytes it does not.
    assume(not _encodable(json.loads(body)[field]))
    with pytest.raises(RequestRejected) as rejected:
        parse_speech_request(body)
    expected = "invalid_value" if field.endswith("_format") else "invalid_text"
    assert (rejected.value.status, rejected.value.param) == (400, field)
    assert rejected.value.code == expected


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


SOURCE = StaticConfigSource(
    GatewayConfig(
        version="fuzz",
        models={"espeak": ModelRoute(backends=("espeak",)), "cosyvoice3": ModelRoute()},
    )
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_the_processor_never_answers_5xx(body: bytes) -> None:
    try:
        response, _ = asyncio.run(speech(SOURCE, body))
    except RequestRejected as exc:
        # The stream loop turns this into an immediate response with exc.status.
        assert 400 <= exc.status < 500
        return
    if response.HasField("immediate_response"):
        assert response.immediate_response.status.code < 500
    else:
        assert response.WhichOneof("response") == "request_body"
