"""One metrics_service flush from an Envoy, decoded straight from protobuf wire bytes.

Only the fields the analysis reads are decoded: the node id, and per cluster the
`upstream_rq_<N>xx` counters and the `upstream_rq_time` histogram. Every other metric
family is skipped by its length without being parsed, so a flush costs little more than
scanning its family names (betterproto2 parses all of it: see benchmarks/metrics_decode.py).

Wire layout (envoy.service.metrics.v3.StreamMetricsMessage, io.prometheus.client):
  StreamMetricsMessage: 1 identifier {1 node {1 id}}, 2 envoy_metrics: MetricFamily
  MetricFamily: 1 name, 4 metric: Metric
  Metric: 3 counter {1 value: double}, 7 histogram {1 sample_count, 3 bucket {1 cumulative_count,
          2 upper_bound: double}}
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from control_plane.metrics.errors import DecodeError
from control_plane.metrics.histogram import Histogram, merge

_CLUSTER = b"cluster."
_RQ = b".upstream_rq_"
_CLASSES = {b"1xx", b"2xx", b"3xx", b"4xx", b"5xx"}
_TIME = b"time"
# Envoy repeats a cluster's request stats under these sub-scopes (by request origin, canary
# host, zone); they are subsets of the plain ones and must not be counted twice.
_SUBSCOPES = (b".external", b".internal", b".canary")
_DOUBLE = struct.Struct("<d")
_EMPTY = Histogram()


@dataclass
class ClusterDelta:
    """One cluster's traffic in one flush interval on one Envoy."""

    requests: int = 0
    errors_5xx: int = 0
    latency: Histogram = field(default_factory=Histogram)

    @property
    def empty(self) -> bool:
        return self.requests == 0 and self.latency.count == 0


@dataclass
class Flush:
    node_id: str | None
    clusters: dict[str, ClusterDelta]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        try:
            b = data[pos]
        except IndexError:
            raise DecodeError("truncated varint") from None
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _varint(data, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise DecodeError(f"unsupported wire type {wire_type}")


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in data[pos:end]."""
    out = []
    while pos < end:
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 2:
            length, start = _varint(data, pos)
            pos = start + length
            out.append((number, 2, start, pos))
        else:
            start = pos
            pos = _skip(data, pos, wire_type)
            out.append((number, wire_type, start, pos))
    if pos != end:
        raise DecodeError("field runs past its message")
    return out


def _node_id(data: bytes, start: int, end: int) -> str | None:
    for number, wire_type, s, e in _fields(data, start, end):
        if number == 1 and wire_type == 2:  # identifier.node
            for n2, w2, s2, e2 in _fields(data, s, e):
                if n2 == 1 and w2 == 2:  # node.id
                    return data[s2:e2].decode("utf-8", "replace")
    return None


def _metrics(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field, wire type, start, end) of each field of each Metric in a MetricFamily body."""
    out: list[tuple[int, int, int, int]] = []
    for number, wire_type, s, e in _fields(data, start, end):
        if number == 4 and wire_type == 2:  # MetricFamily.metric
            out += _fields(data, s, e)
    return out


def _counter_sum(data: bytes, start: int, end: int) -> float:
    total = 0.0
    for number, wire_type, s, e in _metrics(data, start, end):
        if number == 3 and wire_type == 2:  # Metric.counter
            for n2, w2, s2, _ in _fields(data, s, e):
                if n2 == 1 and w2 == 1:
                    total += _DOUBLE.unpack_from(data, s2)[0]
    return total


def _one_histogram(data: bytes, pos: int, end: int) -> Histogram:
    # Hot path at fleet scale: every used cluster sends its histogram each flush, mostly
    # empty. Protobuf writes fields in number order, so sample_count (1) precedes the buckets
    # (3): a histogram whose count is still 0 at its first bucket is empty and skipped whole.
    count = 0
    bounds: list[float] = []
    cumulative: list[int] = []
    while pos < end:
        tag, pos = _varint(data, pos)
        if tag == 0x08:  # sample_count
            count, pos = _varint(data, pos)
        elif tag == 0x1A:  # bucket
            if count == 0:
                return _EMPTY
            length, pos = _varint(data, pos)
            bucket_end = pos + length
            bucket_count, bound = 0, 0.0
            while pos < bucket_end:
                btag = data[pos]
                pos += 1
                if btag == 0x08:  # cumulative_count
                    bucket_count, pos = _varint(data, pos)
                elif btag == 0x11:  # upper_bound
                    bound = _DOUBLE.unpack_from(data, pos)[0]
                    pos += 8
                else:
                    pos = _skip(data, pos, btag & 7)
            if pos != bucket_end:
                raise DecodeError("bucket runs past its end")
            bounds.append(bound)
            cumulative.append(bucket_count)
        else:
            pos = _skip(data, pos, tag & 7)
    if pos != end:
        raise DecodeError("histogram runs past its end")
    return Histogram(tuple(bounds), tuple(cumulative), count) if count else _EMPTY


def _histogram(data: bytes, start: int, end: int) -> Histogram:
    parts = [
        _one_histogram(data, s, e)
        for number, wire_type, s, e in _metrics(data, start, end)
        if number == 7 and wire_type == 2  # Metric.histogram
    ]
    parts = [h for h in parts if h.count]
    if not parts:
        return _EMPTY
    return parts[0] if len(parts) == 1 else merge(parts)


def _wanted(name: bytes) -> tuple[str, bytes] | None:
    """(cluster, stat) for `cluster.<cluster>.upstream_rq_<stat>` families the analysis reads."""
    if not name.startswith(_CLUSTER):
        return None
    at = name.rfind(_RQ)
    if at <= len(_CLUSTER):
        return None
    stat = name[at + len(_RQ) :]
    if stat != _TIME and stat not in _CLASSES:
        return None
    cluster = name[len(_CLUSTER) : at]
    if cluster.endswith(_SUBSCOPES) or b".zone." in cluster:
        return None
    return cluster.decode("utf-8", "replace"), stat


def parse_flush(data: bytes) -> Flush:
    """Decode one StreamMetricsMessage; raises DecodeError on malformed bytes."""
    node_id: str | None = None
    clusters: dict[str, ClusterDelta] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            tag, pos = _varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type != 2:
                pos = _skip(data, pos, wire_type)
                continue
            length, start = _varint(data, pos)
            pos = start + length
            if pos > end:
                raise DecodeError("message runs past the end of the flush")
            if number == 1:
                node_id = _node_id(data, start, pos)
            elif number == 2:
                _family(data, start, pos, clusters)
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed metrics flush: {exc}") from exc
    return Flush(node_id, clusters)


def _family(data: bytes, start: int, end: int, clusters: dict[str, ClusterDelta]) -> None:
    # Envoy writes the name first (field order), so an unwanted family costs one comparison.
    tag, pos = _varint(data, start)
    if tag != 0x0A:  # field 1, length-delimited
        name_field = [(s, e) for n, w, s, e in _fields(data, start, end) if n == 1 and w == 2]
        if not name_field:
            return
        name = data[name_field[0][0] : name_field[0][1]]
    else:
        length, pos = _varint(data, pos)
        if not data.startswith(_CLUSTER, pos):
            return
        name = data[pos : pos + length]
    wanted = _wanted(name)
    if wanted is None:
        return
    cluster, stat = wanted
    delta = clusters.get(cluster)
    if delta is None:
        delta = clusters[cluster] = ClusterDelta()
    if stat == _TIME:
        delta.latency = _histogram(data, start, end)
        return
    value = round(_counter_sum(data, start, end))
    delta.requests += value
    if stat == b"5xx":
        delta.errors_5xx += value
