"""The speech, voices and pass-through processors, phase by phase, fed what Envoy would send."""

from __future__ import annotations

import json

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)

from gateway.config_client import StaticConfigSource
from gateway.errors import InvalidRequestError, ModelNotFoundError, RequestRejected
from gateway.ext_proc.passthrough import PassthroughProcessor
from gateway.ext_proc.processor import Outcome, Processor, RequestHead
from gateway.ext_proc.responses import reject
from gateway.ext_proc.router import Router
from gateway.ext_proc.speech_processor import SpeechProcessor
from gateway.ext_proc.voices_processor import VoicesProcessor
from ttsgw_contract.modes import PASSTHROUGH_MODE


def headers_request(
    method: str, path: str, extra: dict[str, str] | None = None, *, end_of_stream: bool = False
) -> ProcessingRequest:
    pairs = {":method": method, ":path": path, ":authority": "gw", **(extra or {})}
    # Envoy 1.40 fills raw_value and leaves value empty.
    header_map = HeaderMap(
        headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    )
    return ProcessingRequest(
        request_headers=HttpHeaders(headers=header_map, end_of_stream=end_of_stream)
    )


def body_request(body: bytes | dict) -> ProcessingRequest:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return ProcessingRequest(request_body=HttpBody(body=raw, end_of_stream=True))


def set_headers(common) -> dict[str, str]:
    return {
        h.header.key: (h.header.raw_value.decode() or h.header.value)
        for h in common.header_mutation.set_headers
    }


@pytest.fixture
def source() -> StaticConfigSource:
    return StaticConfigSource.of_models("espeak", "cosyvoice3", version="v1")


def processor_for(source, request: ProcessingRequest) -> Processor:
    """The processor a stream would get for these request headers, as the router picks it."""
    return Router().select(RequestHead.parse(request.request_headers), source.current())


async def run_headers(source, method, path, extra=None, **kw):
    request = headers_request(method, path, extra, **kw)
    processor = processor_for(source, request)
    return await processor.request_headers(request.request_headers), processor


async def speech(source, body, extra=None):
    """Headers then body through one processor, as a stream does."""
    _, processor = await run_headers(source, "POST", "/v1/audio/speech", extra)
    return await processor.request_body(body_request(body).request_body), processor


# -- request headers ---------------------------------------------------------------


async def test_speech_headers_strip_client_tts_headers_and_wait_for_body(source):
    response, processor = await run_headers(
        source,
        "POST",
        "/v1/audio/speech?x=1",
        {"x-tts-model": "cosyvoice3", "X-TTS-Priority": "high", "authorization": "Bearer k"},
    )
    assert response.WhichOneof("response") == "request_headers"
    common = response.request_headers.response
    # The client's x-tts-model goes; its x-tts-priority is overwritten by what its key
    # grants (no key known here: default).
    assert sorted(common.header_mutation.remove_headers) == ["x-tts-model"]
    # Marked as seen by the filter, so Envoy's degraded route cannot answer it.
    assert set_headers(common) == {
        "x-tts-filtered": "1",
        "x-tts-priority": "default",
        "x-tts-class": "anonymous",
    }
    # Envoy matched a route with the client's headers already; changes need a re-match.
    assert common.clear_route_cache
    # The body must still come: no mode override that would switch it off.
    assert not response.HasField("mode_override")
    assert isinstance(processor, SpeechProcessor)
    assert (processor.head.method, processor.head.path, processor.head.query) == (
        "POST",
        "/v1/audio/speech",
        "x=1",
    )
    assert processor.outcome is None


async def test_clean_headers_need_no_mutation_and_no_route_clear(source):
    response, _ = await run_headers(source, "GET", "/v1/models", {"x-other": "1"})
    common = response.request_headers.response
    assert not common.HasField("header_mutation")
    assert not common.clear_route_cache


async def test_speech_without_body_is_rejected_at_headers(source):
    with pytest.raises(InvalidRequestError):
        await run_headers(source, "POST", "/v1/audio/speech", end_of_stream=True)


async def test_other_paths_pass_through_and_skip_the_body(source):
    response, processor = await run_headers(source, "GET", "/v1/models", {"x-tts-model": "espeak"})
    common = response.request_headers.response
    assert list(common.header_mutation.remove_headers) == ["x-tts-model"]
    assert common.clear_route_cache
    assert response.mode_override == PASSTHROUGH_MODE
    assert isinstance(processor, PassthroughProcessor)
    assert processor.outcome is Outcome.PASSTHROUGH


async def test_headers_read_legacy_value_field(source):
    request = ProcessingRequest(
        request_headers=HttpHeaders(
            headers=HeaderMap(
                headers=[
                    HeaderValue(key=":method", value="GET"),
                    HeaderValue(key=":path", value="/v1/audio/voices?model=espeak"),
                ]
            )
        )
    )
    processor = processor_for(source, request)
    assert isinstance(processor, VoicesProcessor)
    response = await processor.request_headers(request.request_headers)
    assert set_headers(response.request_headers.response)["x-tts-model"] == "espeak"


async def test_voices_known_model_sets_header_and_clears_route_cache(source):
    response, processor = await run_headers(
        source, "GET", "/v1/audio/voices?model=cosyvoice3", {"x-tts-model": "espeak"}
    )
    common = response.request_headers.response
    assert set_headers(common) == {
        "x-tts-model": "cosyvoice3",
        "x-tts-priority": "default",
        "x-tts-class": "anonymous",
    }
    # Ours overwrites; removing the same name too would risk dropping ours.
    assert "x-tts-model" not in common.header_mutation.remove_headers
    assert common.clear_route_cache
    assert processor.outcome is Outcome.ROUTED and processor.model == "cosyvoice3"


async def test_voices_unknown_model_is_404(source):
    with pytest.raises(ModelNotFoundError) as err:
        await run_headers(source, "GET", "/v1/audio/voices?model=nope")
    assert err.value.status == 404 and err.value.code == "model_not_found"
    assert "nope" in err.value.message and "cosyvoice3, espeak" in err.value.message


@pytest.mark.parametrize(
    "path", ["/v1/audio/voices", "/v1/audio/voices?model=", "/v1/audio/voices?x=1"]
)
async def test_voices_missing_model_is_400(source, path):
    with pytest.raises(InvalidRequestError) as err:
        await run_headers(source, "GET", path)
    assert err.value.status == 400 and err.value.param == "model"


async def test_voices_before_first_config_fail_open():
    response, processor = await run_headers(StaticConfigSource(), "GET", "/v1/audio/voices?model=x")
    assert not response.request_headers.response.header_mutation.set_headers
    assert response.mode_override == PASSTHROUGH_MODE
    assert processor.outcome is Outcome.PASSTHROUGH


# -- request body ------------------------------------------------------------------


async def test_known_model_is_routed(source):
    response, processor = await speech(
        source, {"model": "espeak", "input": "hello", "voice": "alloy"}, {"x-tts-model": "x"}
    )
    assert response.WhichOneof("response") == "request_body"
    common = response.request_body.response
    assert set_headers(common) == {"x-tts-model": "espeak"}
    assert common.clear_route_cache
    assert processor.outcome is Outcome.ROUTED


async def test_unknown_model_is_404_model_not_found(source):
    with pytest.raises(ModelNotFoundError) as err:
        await speech(source, {"model": "tts-1", "input": "hi"})
    assert err.value.param == "model"
    assert "'tts-1'" in err.value.message and "espeak" in err.value.message


async def test_unknown_model_message_points_at_models_list_when_long():
    many = StaticConfigSource.of_models(*(f"m{i}" for i in range(50)))
    with pytest.raises(ModelNotFoundError) as err:
        await speech(many, {"model": "tts-1", "input": "hi"})
    assert "GET /v1/models" in err.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"\xff\xfe\x00", None),
        (b"[" * 100_000, None),
        (b'["model"]', None),
        (b"42", None),
        ({"input": "hi"}, "model"),
        ({"model": 7, "input": "hi"}, "model"),
        ({"model": "", "input": "hi"}, "model"),
        ({"model": "espeak"}, "input"),
        ({"model": "espeak", "input": ""}, "input"),
        ({"model": "espeak", "input": "   "}, "input"),
        ({"model": "espeak", "input": ["a"]}, "input"),
    ],
)
async def test_bad_bodies_are_400(source, body, param):
    with pytest.raises(InvalidRequestError) as err:
        await speech(source, body)
    assert err.value.status == 400
    assert err.value.param == param


async def test_body_before_first_config_validates_but_does_not_route():
    empty = StaticConfigSource()
    response, processor = await speech(empty, {"model": "anything", "input": "hi"})
    assert not response.request_body.response.HasField("header_mutation")
    assert processor.outcome is Outcome.PASSTHROUGH
    with pytest.raises(InvalidRequestError):
        await speech(empty, b"{bad")


async def test_config_swap_is_seen_by_the_next_request(source):
    with pytest.raises(ModelNotFoundError):
        await speech(source, {"model": "new", "input": "hi"})
    source.set(StaticConfigSource.of_models("new", version="v2").current())
    response, _ = await speech(source, {"model": "new", "input": "hi"})
    assert set_headers(response.request_body.response) == {"x-tts-model": "new"}


# -- the wire shape of a rejection ---------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidRequestError("bad input", param="input"), 400),
        (ModelNotFoundError("no such model", param="model"), 404),
    ],
)
def test_reject_is_immediate_json_in_openai_shape(exc: RequestRejected, status: int):
    response: ProcessingResponse = reject(exc)
    immediate = response.immediate_response
    assert immediate.status.code == status
    headers = {h.header.key: h.header.raw_value.decode() for h in immediate.headers.set_headers}
    assert headers == {"content-type": "application/json"}
    error = json.loads(immediate.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"] == exc.message and error["param"] == exc.param
    assert error["code"] == ("model_not_found" if status == 404 else None)


async def test_speech_is_not_marked_before_the_first_config():
    """Failing open means the degraded route must stay reachable, so no marker yet."""
    response, _ = await run_headers(StaticConfigSource(), "POST", "/v1/audio/speech", {})
    common = response.request_headers.response
    assert not common.HasField("header_mutation")
    assert not common.clear_route_cache
