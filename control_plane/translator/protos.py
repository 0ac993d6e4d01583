"""Small builders for the protobuf values every translator module needs."""

from __future__ import annotations

import functools
import ipaddress

from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.config.core.v3.config_source_pb2 import (
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
)
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message


def duration(seconds: float) -> Duration:
    # Whole milliseconds, so 0.1 s never becomes 0.1000000000000000055 s in the proto.
    d = Duration()
    d.FromMilliseconds(round(seconds * 1000))
    return d


def packed(message: Message) -> Any:
    any_ = Any()
    # Deterministic: packed bytes hold maps (e.g. the access log's JSON format), and a
    # snapshot's version is a hash of these bytes, so it must not change across restarts.
    any_.Pack(message, deterministic=True)
    return any_


def socket_address(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def ads() -> ConfigSource:
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


# Cached: a 1,000-backend translation asks about the same few hosts thousands of times,
# and ipaddress parsing was ~15% of it (benchmarks/convergence.py, cProfile).
@functools.lru_cache(maxsize=4096)
def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def header(key: str, value: str) -> HeaderValueOption:
    # Overwrite, so a header an upstream (or a client) already set is never doubled.
    return HeaderValueOption(
        header=HeaderValue(key=key, value=value),
        append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
