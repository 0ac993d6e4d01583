"""The stream loop: dispatch per phase, rejections to immediate responses, fail open on bugs."""

from __future__ import annotations

import asyncio
import hashlib
import json

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
from gateway.ext_proc.metrics import FilterMetrics
from gateway.ext_proc.server import build_processors
from gateway.ext_proc.stream import ExtProcService
from ttsgw_contract.gateway_config import AuthPolicy, PriorityClass


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


def _service(processors=None, source=None):
    registry = CollectorRegistry()
    source = source or StaticConfigSource.of_models("espeak", version="v1")
    metrics = FilterMetrics(registry, source)
    return ExtProcService(processors or build_processors(source), metrics), registry


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


class _Broken:
    may_wait = False

    async def process(self, request, ctx):
        raise KeyError("bug")


async def test_unexpected_exception_fails_open(caplog):
    source = StaticConfigSource.of_models("espeak")
    processors = build_processors(source)
    processors["request_body"] = _Broken()
    service, registry = _service(processors, source)
    out = await _collect(
        service, _headers("POST", "/v1/audio/speech"), _body({"model": "espeak", "input": "x"})
    )
    body = out[1]
    assert body.WhichOneof("response") == "request_body"
    assert not body.request_body.response.HasField("header_mutation")
    assert _count(registry, "failed_open") == 1
    assert "gateway filter failed in request_body" in caplog.text


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


async def test_a_slow_phase_extends_envoys_message_timer_first():
    """A processor that knowingly waits gets Envoy's timer extended before it answers."""

    class Slow:
        may_wait = True

        async def process(self, request, ctx):
            await asyncio.sleep(0.1)
            return ProcessingResponse(request_headers=HeadersResponse())

    registry = CollectorRegistry()
    source = StaticConfigSource.of_models("espeak", version="v1")
    service = ExtProcService(
        {"request_headers": Slow()},
        FilterMetrics(registry, source),
        extend_after_s=0.02,
        extended_timeout_s=30,
    )
    out = await _collect(service, _headers("GET", "/v1/models"))
    assert [r.WhichOneof("response") for r in out] == [None, "request_headers"]
    assert out[0].override_message_timeout.seconds == 30


async def test_a_fast_phase_sends_no_extension():
    service, _ = _service()
    out = await _collect(service, _headers("GET", "/v1/models"))
    assert len(out) == 1 and not out[0].HasField("override_message_timeout")
