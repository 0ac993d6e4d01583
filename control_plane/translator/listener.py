"""The client-facing listener: HTTP connection manager, JSON access log, ext_proc then router."""

from __future__ import annotations

from envoy.config.accesslog.v3.accesslog_pb2 import AccessLog
from envoy.config.core.v3.grpc_service_pb2 import GrpcService
from envoy.config.core.v3.substitution_format_string_pb2 import SubstitutionFormatString
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.trace.v3.http_tracer_pb2 import Tracing as HttpTracer
from envoy.config.trace.v3.zipkin_pb2 import ZipkinConfig
from envoy.extensions.access_loggers.file.v3.file_pb2 import FileAccessLog
from envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2 import ExternalProcessor
from envoy.extensions.filters.http.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.request_id.uuid.v3.uuid_pb2 import UuidRequestIdConfig
from envoy.type.tracing.v3.custom_tag_pb2 import CustomTag
from envoy.type.v3.percent_pb2 import Percent
from google.protobuf.struct_pb2 import Struct
from google.protobuf.wrappers_pb2 import BoolValue, UInt32Value

from control_plane.translator.local_replies import local_reply_config
from control_plane.translator.options import (
    EXT_PROC_CLUSTER,
    HTTP_CONNECTION_MANAGER,
    STAT_PREFIX,
    ZIPKIN_CLUSTER,
    TracingOptions,
    TranslatorOptions,
)
from control_plane.translator.protos import ads, duration, packed, socket_address
from ttsgw_contract.limits import MAX_EXT_PROC_MESSAGE_BYTES, MAX_REQUEST_BODY_BYTES
from ttsgw_contract.modes import STATIC_MODE

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
ROUTER_FILTER = "envoy.filters.http.router"
FILE_ACCESS_LOG = "envoy.access_loggers.file"
ZIPKIN_TRACER = "envoy.tracers.zipkin"

# The source article's fields, then the ones that tie a line to a trace, a model and a backend.
ACCESS_LOG_FORMAT: dict[str, str] = {
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
    # 128-bit, so the same id finds the trace in Zipkin, the worker logs and error bodies.
    "trace_id": "%TRACE_ID%",
}

# Tags on Envoy's own spans, read from the headers the filter sets; never the body.
SPAN_TAGS_FROM_HEADERS: dict[str, str] = {
    "request_id": "x-request-id",
    "tts.model": "x-tts-model",
    "tts.priority": "x-tts-priority",
    "tts.priority_class": "x-tts-class",
}

# The gRPC call to the filter is one stream per request; message_timeout bounds each
# message, this bounds opening the stream.
EXT_PROC_GRPC_TIMEOUT_S = 1.0


def listener(options: TranslatorOptions) -> Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=STAT_PREFIX,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=ads(), route_config_name=options.route_config_name),
        generate_request_id=BoolValue(value=True),
        always_set_request_id_in_response=True,
        preserve_external_request_id=True,
        request_id_extension=request_id_extension(),
        access_log=[access_log(options.access_log_path)],
        local_reply_config=local_reply_config(),
        http_filters=[
            hcm_pb2.HttpFilter(name=EXT_PROC_FILTER, typed_config=packed(ext_proc(options))),
            hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=packed(Router())),
        ],
    )
    if options.tracing is not None:
        hcm.tracing.CopyFrom(tracing(options.tracing))
    return Listener(
        name=options.listener_name,
        address=socket_address(options.listener_address, options.listener_port),
        # ext_proc BUFFERED mode holds the whole body within this limit and answers 413
        # above it (local_replies.py gives that 413 OpenAI's shape); the filter's gRPC
        # server takes the same bodies (MAX_EXT_PROC_MESSAGE_BYTES).
        per_connection_buffer_limit_bytes=UInt32Value(value=MAX_REQUEST_BODY_BYTES),
        filter_chains=[
            FilterChain(filters=[Filter(name=HTTP_CONNECTION_MANAGER, typed_config=packed(hcm))])
        ],
    )


def access_log(path: str) -> AccessLog:
    fmt = Struct()
    fmt.update(ACCESS_LOG_FORMAT)
    return AccessLog(
        name=FILE_ACCESS_LOG,
        typed_config=packed(
            FileAccessLog(path=path, log_format=SubstitutionFormatString(json_format=fmt))
        ),
    )


def request_id_extension() -> hcm_pb2.RequestIDExtension:
    """A client's own x-request-id reaches the workers and comes back byte for byte.

    By default Envoy's UUID extension rewrites one hex digit of a UUID request id to carry
    the trace decision, so with tracing on a client's id would come back altered and match
    nothing in its own logs. B3 headers already carry the decision to the filter and the
    workers; and sampling stays random rather than a hash of an id the client picks.
    """
    uuid_config = UuidRequestIdConfig(
        pack_trace_reason=BoolValue(value=False),
        use_request_id_for_trace_sampling=BoolValue(value=False),
    )
    return hcm_pb2.RequestIDExtension(typed_config=packed(uuid_config))


def ext_proc(options: TranslatorOptions) -> ExternalProcessor:
    return ExternalProcessor(
        grpc_service=GrpcService(
            envoy_grpc=GrpcService.EnvoyGrpc(
                cluster_name=EXT_PROC_CLUSTER,
                # The filter's answers carry whole bodies too (a cached clip, a mutation);
                # the bound is the one both ends of the stream share.
                max_receive_message_length=UInt32Value(value=MAX_EXT_PROC_MESSAGE_BYTES),
            ),
            timeout=duration(EXT_PROC_GRPC_TIMEOUT_S),
        ),
        failure_mode_allow=options.ext_proc_failure_mode_allow,
        message_timeout=duration(options.ext_proc_message_timeout_ms / 1000),
        max_message_timeout=duration(options.ext_proc_max_message_timeout_ms / 1000),
        processing_mode=STATIC_MODE,
        allow_mode_override=True,
    )


def tracing(options: TracingOptions) -> hcm_pb2.HttpConnectionManager.Tracing:
    """Zipkin v2 protobuf to the span relay, 128-bit trace ids, B3 headers to the upstreams.

    Protobuf, not JSON: Envoy prints Zipkin JSON through protobuf's JSON printer, which
    cost more CPU than the rest of the request's tracing (docs/decisions.md); Zipkin and
    the relay accept both. Client and server spans are separate (``shared_span_context``
    off), so each hop has its own span id and the parent links in Zipkin are exact.
    ``spawn_upstream_span`` gives the router's hop to the worker a span of its own.
    """
    zipkin = ZipkinConfig(
        collector_cluster=ZIPKIN_CLUSTER,
        collector_endpoint=options.collector_endpoint,
        collector_endpoint_version=ZipkinConfig.HTTP_PROTO,
        trace_id_128bit=True,
        shared_span_context=BoolValue(value=False),
    )
    percent = Percent(value=options.sampling_percent)
    return hcm_pb2.HttpConnectionManager.Tracing(
        provider=HttpTracer.Http(name=ZIPKIN_TRACER, typed_config=packed(zipkin)),
        random_sampling=percent,
        client_sampling=Percent(value=100.0),
        overall_sampling=Percent(value=100.0),
        spawn_upstream_span=BoolValue(value=True),
        custom_tags=[
            CustomTag(tag=tag, request_header=CustomTag.Header(name=header))
            for tag, header in SPAN_TAGS_FROM_HEADERS.items()
        ],
    )
