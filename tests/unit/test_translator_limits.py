"""Envoy's size limits come from ttsgw_contract.limits, its 413 is OpenAI's, request ids stay."""

from __future__ import annotations

import dataclasses

from envoy.config.accesslog.v3.accesslog_pb2 import AccessLogFilter
from envoy.extensions.access_loggers.filters.cel.v3.cel_pb2 import ExpressionFilter
from envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2 import ExternalProcessor
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
    ResponseMapper,
)
from envoy.extensions.request_id.uuid.v3.uuid_pb2 import UuidRequestIdConfig
from google.protobuf.json_format import MessageToDict

from control_plane.domain import default_state
from control_plane.translator import TracingOptions, TranslatorOptions, translate
from control_plane.translator.local_replies import CEL_FILTER, PAYLOAD_TOO_LARGE_DETAILS
from control_plane.translator.options import EXT_PROC_CLUSTER
from ttsgw_contract.limits import MAX_EXT_PROC_MESSAGE_BYTES, MAX_REQUEST_BODY_BYTES


def _hcm(options: TranslatorOptions | None = None) -> HttpConnectionManager:
    (listener,) = translate(default_state(), options or TranslatorOptions()).listeners
    hcm = HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def _too_large_mapper() -> ResponseMapper:
    for mapper in _hcm().local_reply_config.mappers:
        f: AccessLogFilter = mapper.filter
        if f.HasField("extension_filter"):
            return mapper
    raise AssertionError("no mapper for Envoy's own 413")


def test_the_size_limits_are_not_translator_options() -> None:
    # One set of numbers: a per-deployment override could drift from what the policy check
    # (GatewayPolicy) and the filter's gRPC server assume.
    names = {f.name for f in dataclasses.fields(TranslatorOptions)}
    assert not {n for n in names if "bytes" in n}


def test_listener_buffers_the_largest_body_the_contract_allows() -> None:
    (listener,) = translate(default_state(), TranslatorOptions()).listeners
    assert listener.per_connection_buffer_limit_bytes.value == MAX_REQUEST_BODY_BYTES


def test_ext_proc_stream_and_cluster_carry_a_whole_buffered_body() -> None:
    ext = ExternalProcessor()
    assert _hcm().http_filters[0].typed_config.Unpack(ext)
    assert ext.grpc_service.envoy_grpc.max_receive_message_length.value == (
        MAX_EXT_PROC_MESSAGE_BYTES
    )
    clusters = {c.name: c for c in translate(default_state(), TranslatorOptions()).clusters}
    ext_proc = clusters[EXT_PROC_CLUSTER]
    assert ext_proc.per_connection_buffer_limit_bytes.value == MAX_EXT_PROC_MESSAGE_BYTES
    assert MAX_EXT_PROC_MESSAGE_BYTES > MAX_REQUEST_BODY_BYTES


def test_envoys_own_413_is_an_openai_error() -> None:
    mapper = _too_large_mapper()
    ext = mapper.filter.extension_filter
    assert ext.name == CEL_FILTER
    expression = ExpressionFilter()
    assert ext.typed_config.Unpack(expression)
    assert expression.expression == f"response.code_details == '{PAYLOAD_TOO_LARGE_DETAILS}'"
    assert mapper.status_code.value == 413
    fmt = mapper.body_format_override
    assert fmt.content_type == "application/json"
    error = MessageToDict(fmt.json_format)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_too_large"
    assert error["param"] is None
    assert str(MAX_REQUEST_BODY_BYTES) in error["message"]
    assert "%LOCAL_REPLY_BODY%" not in error["message"]


def test_client_request_ids_are_never_rewritten() -> None:
    for options in (TranslatorOptions(), TranslatorOptions(tracing=TracingOptions())):
        hcm = _hcm(options)
        config = UuidRequestIdConfig()
        assert hcm.request_id_extension.typed_config.Unpack(config)
        assert config.HasField("pack_trace_reason") and not config.pack_trace_reason.value
        assert not config.use_request_id_for_trace_sampling.value
        assert hcm.preserve_external_request_id is True
