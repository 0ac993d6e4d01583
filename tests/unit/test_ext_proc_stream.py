"""The stream loop: one processor and one config per stream, errors to the wire, timer pacing."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HeadersResponse,
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from prometheus_client import CollectorRegistry

from gateway.config_client import StaticConfigSource
from gateway.errors import InvalidRequestError, ModelNotFoundError
from gateway.ext_proc.admission import Admission
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.processor import BaseProcessor
from gateway.ext_proc.router import Router
from gateway.ext_proc.speech_processor import SpeechProcessor
from gateway.ext_proc.stream import ExtProcService, client_error_in
from ttsgw_contract.gateway_config import (
    AuthPolicy,
    FilterTimeouts,
    GatewayConfig,
    ModelRoute,
    PriorityClass,
)


def _headers(method: str, path: str, api_key: str | None = None) -> ProcessingRequest:
    hm = HeaderMap(
        headers=[
            HeaderValue(key=":method", raw_value=method.encode()),
            HeaderValue(key=":path", raw_value=path.encode()),
        ]
    )
    if api_key is not None:
        hm.headers.append(HeaderValue(key="authorization", raw_value=f"Bearer {api_key}".encode()))
    return ProcessingRequest(request_headers=HttpHeaders(headers=hm))


def _body(payload: object) -> ProcessingRequest:
    return ProcessingRequest(
        request_body=HttpBody(body=json.dumps(payload).encode(), end_of_stream=True)
    )


async def _iterate(*messages):
    for m in messages:
        yield m


def _service(select=None, source=None, **kwargs):
    registry = CollectorRegistry()
    source = source or StaticConfigSource.of_models("espeak", version="v1")
    metrics = FilterMetrics(registry, source)
    return ExtProcService(source, select or Router().select, metrics, **kwargs), registry


async def _collect(service, *messages):
    return [r async for r in service.Process(_iterate(*messages), None)]


def _count(registry: CollectorRegistry, outcome: str, **labels: str) -> float:
    """Requests with this outcome, summed over the model and class labels not given."""
    wanted = {"outcome": outcome, **labels}
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "ttsgw_filter_requests_total" and wanted.items() <= sample.labels.items()
    )


async def test_routed_request_is_counted_once_and_timed_per_phase():
    service, registry = _service()
    out = await _collect(
        service,
        _headers("POST", "/v1/audio/speech"),
        _body({"model": "espeak", "input": "hi"}),
    )
    assert [r.WhichOneof("response") for r in out] == ["request_headers", "request_body"]
    assert _count(registry, "routed") == 1
    for phase in ("request_headers", "request_body"):
        assert (
            registry.get_sample_value("ttsgw_filter_duration_seconds_count", {"phase": phase}) == 1
        )
    assert registry.get_sample_value("ttsgw_filter_config_revision") == 0
    assert (
        registry.get_sample_value(
            "ttsgw_filter_config_version_info", {"version": "v1", "models": "1"}
        )
        == 1
    )


async def test_rejection_is_immediate_and_ends_the_stream():
    service, registry = _service()
    out = await _collect(
        service,
        _headers("POST", "/v1/audio/speech"),
        _body({"model": "missing", "input": "hi"}),
        # Envoy would send nothing after an immediate response; the loop must not answer it.
        _body({"model": "espeak", "input": "hi"}),
    )
    assert [r.WhichOneof("response") for r in out] == ["request_headers", "immediate_response"]
    assert out[1].immediate_response.status.code == 404
    assert json.loads(out[1].immediate_response.body)["error"]["code"] == "model_not_found"
    assert _count(registry, "rejected_4xx") == 1


async def test_requests_are_counted_by_known_model_and_priority_class():
    base = StaticConfigSource.of_models("espeak", version="v1").current()
    assert base is not None
    key = "sk-gold"
    auth = AuthPolicy(
        keys={hashlib.sha256(key.encode()).hexdigest(): "gold"},
        classes={"gold": PriorityClass(level="high")},
    )
    service, registry = _service(source=StaticConfigSource(base.model_copy(update={"auth": auth})))
    speech = ("POST", "/v1/audio/speech")
    await _collect(service, _headers(*speech, key), _body({"model": "espeak", "input": "hi"}))
    await _collect(service, _headers(*speech), _body({"model": "espeak", "input": "hi"}))
    await _collect(service, _headers(*speech, key), _body({"model": "nope", "input": "hi"}))
    assert _count(registry, "routed", model="espeak", **{"class": "gold"}) == 1
    assert _count(registry, "routed", model="espeak", **{"class": "none"}) == 1  # anonymous
    # The client's unknown model name never becomes a label value.
    assert _count(registry, "rejected_4xx", model="unknown", **{"class": "gold"}) == 1
    assert _count(registry, "rejected_4xx", model="nope") == 0


class _Broken(SpeechProcessor):
    """A speech processor with a bug in one phase."""

    def __init__(self, *args, phase: str, exc: Exception) -> None:
        super().__init__(*args)
        self._phase, self._exc = phase, exc
        self.closed = 0

    async def request_body(self, message):
        if self._phase == "request_body":
            raise self._exc
        return await super().request_body(message)

    async def response_headers(self, message):
        raise self._exc

    def close(self):
        self.closed += 1


def _broken(phase: str, exc: Exception) -> tuple[list[_Broken], object]:
    made: list[_Broken] = []
    admission = Admission()

    def select(head, config, trace):
        made.append(_Broken(head, config, admission, None, trace, phase=phase, exc=exc))
        return made[-1]

    return made, select


async def test_a_bug_in_a_request_phase_is_a_500_in_openais_shape(caplog):
    made, select = _broken("request_body", KeyError("secret-detail-42"))
    service, registry = _service(select)
    headers = _headers("POST", "/v1/audio/speech")
    headers.request_headers.headers.headers.append(
        HeaderValue(key="x-request-id", raw_value=b"rid-9")
    )
    out = await _collect(service, headers, _body({"model": "espeak", "input": "x"}))
    immediate = out[1].immediate_response
    assert immediate.status.code == 500
    error = json.loads(immediate.body)["error"]
    assert (error["type"], error["code"], error["request_id"]) == (
        "server_error",
        "filter_error",
        "rid-9",
    )
    assert "secret-detail-42" not in immediate.body.decode()  # nor its traceback
    assert _count(registry, "failed_5xx") == 1
    assert "gateway filter failed in request_body" in caplog.text
    assert made[0].closed >= 1


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("wrapped"),
        ExceptionGroup("group", [ValueError("other"), ModelNotFoundError("no such model")]),
    ],
)
async def test_a_wrapped_client_error_is_still_its_4xx(exc):
    if isinstance(exc, RuntimeError):
        exc.__cause__ = InvalidRequestError("bad input", param="input")
        status = 400
    else:
        status = 404
    _, select = _broken("request_body", exc)
    service, registry = _service(select)
    out = await _collect(
        service, _headers("POST", "/v1/audio/speech"), _body({"model": "espeak", "input": "x"})
    )
    assert out[1].immediate_response.status.code == status
    assert _count(registry, "rejected_4xx") == 1 and _count(registry, "failed_5xx") == 0


def test_client_error_in_finds_nothing_in_a_plain_bug():
    assert client_error_in(KeyError("bug")) is None
    cause = InvalidRequestError("x")
    loop = RuntimeError("loop")
    loop.__context__ = loop  # a cycle must not hang the search
    loop.__cause__ = cause
    assert client_error_in(loop) is cause


async def test_a_bug_in_picking_the_processor_is_a_500(caplog):
    def select(head, config, trace):
        raise KeyError("bug")

    service, registry = _service(select)
    out = await _collect(service, _headers("GET", "/v1/models"), _body({}))
    assert len(out) == 1 and out[0].immediate_response.status.code == 500
    assert _count(registry, "failed_5xx") == 1
    assert "failed to pick a processor" in caplog.text


async def test_a_bug_in_a_response_phase_fails_open(caplog):
    made, select = _broken("response_headers", KeyError("bug"))
    service, registry = _service(select)
    out = await _collect(
        service,
        _headers("POST", "/v1/audio/speech"),
        _body({"model": "espeak", "input": "x"}),
        ProcessingRequest(response_headers=HttpHeaders()),
    )
    assert [r.WhichOneof("response") for r in out] == [
        "request_headers",
        "request_body",
        "response_headers",
    ]
    assert not out[2].response_headers.HasField("response")
    # Decided routed in the body phase; the later failure does not rewrite it.
    assert _count(registry, "routed") == 1 and _count(registry, "failed_open") == 0
    assert "gateway filter failed in response_headers" in caplog.text
    assert made[0].closed >= 1


async def test_one_config_snapshot_serves_every_phase_of_a_stream():
    source = StaticConfigSource.of_models("espeak", version="v1")
    service, registry = _service(source=source)
    swapped = StaticConfigSource.of_models("new", version="v2").current()

    async def messages():
        yield _headers("POST", "/v1/audio/speech")
        source.set(swapped)  # the control plane publishes between the two phases
        yield _body({"model": "espeak", "input": "hi"})

    out = [r async for r in service.Process(messages(), None)]
    [header] = out[1].request_body.response.header_mutation.set_headers
    assert (header.header.key, header.header.raw_value) == ("x-tts-model", b"espeak")
    # The next stream takes the new snapshot.
    again = await _collect(
        service, _headers("POST", "/v1/audio/speech"), _body({"model": "espeak", "input": "hi"})
    )
    assert again[1].immediate_response.status.code == 404
    assert _count(registry, "routed") == 1 and _count(registry, "rejected_4xx") == 1


async def test_the_processor_is_chosen_once_per_stream():
    router = Router()
    chosen: list[object] = []

    def select(head, config, trace):
        chosen.append(router.select(head, config, trace))
        return chosen[-1]

    service, registry = _service(select)
    out = await _collect(
        service,
        _headers("POST", "/v1/audio/speech"),
        _body({"model": "espeak", "input": "hi"}),
        ProcessingRequest(response_headers=HttpHeaders()),
        ProcessingRequest(response_body=HttpBody(body=b"x", end_of_stream=True)),
    )
    assert len(out) == 4
    [processor] = chosen
    assert isinstance(processor, SpeechProcessor) and processor.model == "espeak"
    assert _count(registry, "routed") == 1


async def test_response_phases_and_trailers_continue_unchanged():
    service, registry = _service()
    out = await _collect(
        service,
        _headers("GET", "/v1/models"),
        ProcessingRequest(response_headers=HttpHeaders()),
        ProcessingRequest(response_body=HttpBody(body=b"x", end_of_stream=True)),
        ProcessingRequest(request_trailers={}),
    )
    assert [r.WhichOneof("response") for r in out] == [
        "request_headers",
        "response_headers",
        "response_body",
        "request_trailers",
    ]
    assert _count(registry, "passthrough") == 1


class _Slow(BaseProcessor):
    """Knowingly waits (like a single-flight follower) in its request-headers phase."""

    def may_wait(self, phase):
        return True

    async def request_headers(self, message):
        await asyncio.sleep(0.1)
        return ProcessingResponse(request_headers=HeadersResponse())


def _slow(head, config, trace):
    return _Slow(head, config)


async def test_a_slow_phase_extends_envoys_message_timer_first():
    """A processor that knowingly waits gets Envoy's timer extended before it answers."""
    service, _ = _service(_slow, extend_after_s=0.02, extended_timeout_s=30)
    out = await _collect(service, _headers("GET", "/v1/models"))
    assert [r.WhichOneof("response") for r in out] == [None, "request_headers"]
    assert out[0].override_message_timeout.seconds == 30


@pytest.mark.parametrize(
    ("message_timeout_ms", "extended"), [(40, True), (1000, False)], ids=["short", "long"]
)
async def test_the_pacing_follows_the_config_timeouts(message_timeout_ms, extended):
    timeouts = FilterTimeouts(message_timeout_ms=message_timeout_ms, max_message_timeout_ms=7000)
    config = GatewayConfig(version="v", models={"espeak": ModelRoute()}, timeouts=timeouts)
    service, _ = _service(_slow, StaticConfigSource(config))
    out = await _collect(service, _headers("GET", "/v1/models"))
    # Half the message timer: 20 ms is before the 100 ms answer, 500 ms after it.
    if extended:
        assert [r.WhichOneof("response") for r in out] == [None, "request_headers"]
        assert out[0].override_message_timeout.seconds == 7
    else:
        assert [r.WhichOneof("response") for r in out] == ["request_headers"]


async def test_a_fast_phase_sends_no_extension():
    service, _ = _service()
    out = await _collect(service, _headers("GET", "/v1/models"))
    assert len(out) == 1 and not out[0].HasField("override_message_timeout")
