"""The listener: HCM over RDS, request ids, the JSON access log, ext_proc before the router."""

from __future__ import annotations

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.access_loggers.file.v3.file_pb2 import FileAccessLog
from envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2 import ExternalProcessor
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from google.protobuf.json_format import MessageToDict

from control_plane.domain import default_state
from control_plane.translator import TranslatorOptions, translate
from control_plane.translator.options import EXT_PROC_CLUSTER
from ttsgw_contract.gateway_config import DEFAULT_MESSAGE_TIMEOUT_MS
from ttsgw_contract.limits import MAX_REQUEST_BODY_BYTES


def _listener(options: TranslatorOptions) -> Listener:
    (listener,) = translate(default_state(), options).listeners
    return listener


def _hcm(options: TranslatorOptions) -> HttpConnectionManager:
    listener = _listener(options)
    (chain,) = listener.filter_chains
    (f,) = chain.filters
    assert f.name == "envoy.filters.network.http_connection_manager"
    hcm = HttpConnectionManager()
    assert f.typed_config.Unpack(hcm)
    return hcm


def test_listener_name_and_address() -> None:
    options = TranslatorOptions(
        listener_name="l1", listener_address="127.0.0.1", listener_port=8080
    )
    listener = _listener(options)
    assert listener.name == "l1"
    addr = listener.address.socket_address
    assert (addr.address, addr.port_value) == ("127.0.0.1", 8080)
    assert listener.per_connection_buffer_limit_bytes.value == MAX_REQUEST_BODY_BYTES


def test_hcm_uses_rds_over_ads_and_request_ids() -> None:
    hcm = _hcm(TranslatorOptions(route_config_name="rc1"))
    assert hcm.stat_prefix == "ttsgw"
    assert hcm.rds.route_config_name == "rc1"
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.generate_request_id.value is True
    assert hcm.always_set_request_id_in_response is True
    assert hcm.preserve_external_request_id is True


def test_json_access_log_has_article_fields_and_ours() -> None:
    hcm = _hcm(TranslatorOptions(access_log_path="/tmp/access.log"))
    (log,) = hcm.access_log
    assert log.name == "envoy.access_loggers.file"
    file_log = FileAccessLog()
    assert log.typed_config.Unpack(file_log)
    assert file_log.path == "/tmp/access.log"
    fields = MessageToDict(file_log.log_format.json_format)
    assert fields == {
        "timestamp": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "status": "%RESPONSE_CODE%",
        "duration_ms": "%DURATION%",
        "user_agent": "%REQ(USER-AGENT)%",
        "client_ip": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "model": "%REQ(X-TTS-MODEL)%",
        "response_flags": "%RESPONSE_FLAGS%",
        "priority": "%REQ(X-TTS-PRIORITY)%",
        "priority_class": "%REQ(X-TTS-CLASS)%",
        "cache": "%RESP(X-TTS-CACHE)%",
        "backend": "%RESP(X-TTS-BACKEND)%",
        "trace_id": "%TRACE_ID%",
    }


def test_ext_proc_then_router() -> None:
    hcm = _hcm(TranslatorOptions())
    assert [f.name for f in hcm.http_filters] == [
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]


def test_ext_proc_config() -> None:
    options = TranslatorOptions(ext_proc_message_timeout_ms=750, ext_proc_failure_mode_allow=False)
    ext = ExternalProcessor()
    assert _hcm(options).http_filters[0].typed_config.Unpack(ext)
    assert ext.grpc_service.envoy_grpc.cluster_name == EXT_PROC_CLUSTER
    assert ext.grpc_service.timeout.ToMilliseconds() > 0
    assert ext.failure_mode_allow is False
    assert ext.message_timeout.ToMilliseconds() == 750
    assert ext.allow_mode_override is True
    mode = ext.processing_mode
    # SEND, not SKIP: re-routing by the body's model needs the headers held back.
    assert mode.request_header_mode == ProcessingMode.SEND
    assert mode.request_body_mode == ProcessingMode.BUFFERED
    assert mode.response_header_mode == ProcessingMode.SKIP
    assert mode.response_body_mode == ProcessingMode.NONE
    assert mode.request_trailer_mode == ProcessingMode.SKIP
    assert mode.response_trailer_mode == ProcessingMode.SKIP


def test_ext_proc_defaults() -> None:
    ext = ExternalProcessor()
    assert _hcm(TranslatorOptions()).http_filters[0].typed_config.Unpack(ext)
    assert ext.failure_mode_allow is True
    assert ext.message_timeout.ToMilliseconds() == DEFAULT_MESSAGE_TIMEOUT_MS
