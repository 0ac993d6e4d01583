"""Property-based fuzz of the speech body: a request or a 4xx, never anything else, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config_client import StaticConfigSource
from gateway.errors import RequestRejected
from gateway.ext_proc.context import Endpoint, RequestContext
from gateway.ext_proc.request_body import RequestBodyProcessor
from gateway.speech import SpeechRequest, parse_speech_request
from tests.unit.test_ext_proc_processors import body_request
from ttsgw_contract.gateway_config import GatewayConfig, ModelRoute

FIELDS = [
    "model", "input", "voice", "response_format", "speed", "instructions",
    "stream_format", "prompt_audio", "prompt_text",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["wav", "mp3", "aac", "audio", "sse", "espeak", "UklGRg==", "\ud800", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["espeak", "cosyvoice3", "nope"]), "input": st.text(max_size=50)},
    optional={f: json_values for f in FIELDS[2:]},
)
# Bodies of every kind: raw bytes, any JSON, and near-valid objects with one field broken.
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_valid.map(lambda v: json.dumps(v).encode()),
    st.tuples(near_valid, st.sampled_from(FIELDS), json_values).map(
        lambda t: json.dumps({**t[0], t[1]: t[2]}).encode()
    ),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
)

SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(bodies)
def test_parser_returns_a_request_or_a_4xx(body: bytes) -> None:
    try:
        request = parse_speech_request(body)
    except RequestRejected as exc:
        assert 400 <= exc.status < 500
        assert exc.message
        return
    assert isinstance(request, SpeechRequest)
    assert request.input.strip() and request.model.strip()
    assert math.isfinite(request.speed) and 0.25 <= request.speed <= 4.0


SOURCE = StaticConfigSource(
    GatewayConfig(
        version="fuzz",
        models={"espeak": ModelRoute(backends=("espeak",)), "cosyvoice3": ModelRoute()},
    )
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_the_processor_never_answers_5xx(body: bytes) -> None:
    processor = RequestBodyProcessor(SOURCE)
    ctx = RequestContext(method="POST", path="/v1/audio/speech", endpoint=Endpoint.SPEECH)
    try:
        response = asyncio.run(processor.process(body_request(body), ctx))
    except RequestRejected as exc:
        # The stream loop turns this into an immediate response with exc.status.
        assert 400 <= exc.status < 500
        return
    if response.HasField("immediate_response"):
        assert response.immediate_response.status.code < 500
    else:
        assert response.WhichOneof("response") == "request_body"
