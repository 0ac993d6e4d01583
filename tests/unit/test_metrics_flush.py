"""The hand-rolled metrics_service decoder against betterproto2's encoding of the same schema."""

from __future__ import annotations

import pytest

from control_plane.metrics.errors import DecodeError
from control_plane.metrics.flush import parse_flush
from control_plane.metrics.testing import (
    StreamMetricsMessage,
    Traffic,
    envoy_flush,
    server_families,
)


def test_node_counters_and_histogram() -> None:
    data = envoy_flush(
        {"espeak": Traffic({"2xx": 90, "4xx": 3, "5xx": 7}, [3, 30, 30, 300])},
        node_id="edge-1",
        extra=server_families(),
    )
    flush = parse_flush(data)
    assert flush.node_id == "edge-1"
    (name, delta), *_ = flush.clusters.items()
    assert name == "espeak"
    assert (delta.requests, delta.errors_5xx) == (100, 7)
    assert delta.latency.count == 4
    by_bound = dict(zip(delta.latency.bounds, delta.latency.cumulative, strict=True))
    assert by_bound[5.0] == 1 and by_bound[50.0] == 3 and by_bound[500.0] == 4


def test_only_the_first_message_names_the_node() -> None:
    assert parse_flush(envoy_flush({"a": Traffic({"2xx": 1})})).node_id is None


def test_origin_subscopes_and_other_families_are_not_counted_twice() -> None:
    data = envoy_flush(
        {"espeak": Traffic({"2xx": 5, "5xx": 5}, [10.0] * 10)},
        unfiltered=True,
        extra=server_families(),
    )
    flush = parse_flush(data)
    assert set(flush.clusters) == {"espeak"}  # not "espeak.external"
    assert flush.clusters["espeak"].requests == 10
    assert flush.clusters["espeak"].latency.count == 10


def test_dotted_cluster_names_survive() -> None:
    flush = parse_flush(envoy_flush({"tts.v1.2": Traffic({"5xx": 2})}))
    assert flush.clusters["tts.v1.2"].errors_5xx == 2


def test_agrees_with_betterproto2_on_many_clusters() -> None:
    clusters = {
        f"backend-{i}": Traffic({"2xx": i, "5xx": i % 3}, [float(i % 700)] * (i % 5))
        for i in range(50)
    }
    data = envoy_flush(clusters, unfiltered=True)
    ours = parse_flush(data)
    reference = StreamMetricsMessage.parse(data)
    errors: dict[str, float] = {}
    latencies: dict[str, tuple[int, list[int]]] = {}
    for family in reference.envoy_metrics:
        if ".external." in family.name:
            continue
        cluster, _, stat = family.name.removeprefix("cluster.").rpartition(".")
        if stat == "upstream_rq_5xx":
            counter = family.metric[0].counter
            assert counter is not None
            errors[cluster] = counter.value
        elif stat == "upstream_rq_time":
            h = family.metric[0].histogram
            assert h is not None
            # An interval without samples is skipped whole: no buckets to merge.
            buckets = [b.cumulative_count for b in h.bucket] if h.sample_count else []
            latencies[cluster] = (h.sample_count, buckets)
    # The reference saw every cluster, so each comparison below really ran.
    assert set(errors) == set(latencies) == set(clusters) == set(ours.clusters)
    assert errors == {name: t.by_class.get("5xx", 0) for name, t in clusters.items()}
    for name, delta in ours.clusters.items():
        assert delta.errors_5xx == errors[name]
        assert (delta.latency.count, list(delta.latency.cumulative)) == latencies[name]
    assert sum(count for count, _ in latencies.values()) == sum(i % 5 for i in range(50))


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x05abc",  # length past the end
        b"\x12",  # truncated length
        # a wanted family whose metric runs past the family's end
        b"\x12\x1e\x0a\x19cluster.a.upstream_rq_5xx\x22\x05\x1a",
        b"\x13",  # group wire type
        b"\xff" * 11,  # varint too long
    ],
)
def test_malformed_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_flush(data)


def test_empty_flush() -> None:
    flush = parse_flush(b"")
    assert flush.node_id is None and flush.clusters == {}
