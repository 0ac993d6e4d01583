"""Envoy's protobuf reports: parsed without dicts, decided like JSON, forwarded as JSON."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from ttsgw_common.telemetry import zipkin_proto
from ttsgw_common.telemetry.relay import SamplerPolicy, TailSampler, Verdict, digest_json

TRACE = bytes.fromhex("0123456789abcdef0011223344556677")
ROOT_ID, CHILD_ID = 0x1A2B3C4D5E6F7081, 0x0102030405060708


def envoy_id(value: int) -> bytes:
    # What Envoy writes: the raw bytes of a host (little-endian) uint64.
    return value.to_bytes(8, "little")


def report(status: str = "200", flags: str = "-", child_error: bool = False) -> bytes:
    spans = zipkin_proto.ListOfSpans()
    root = spans.spans.add(
        trace_id=TRACE, id=envoy_id(ROOT_ID), kind=2, name="ingress", timestamp=7, duration=2500
    )
    root.tags.update({"http.status_code": status, "response_flags": flags})
    root.local_endpoint.service_name = "ttsgw"
    root.local_endpoint.ipv4 = bytes([127, 0, 0, 1])
    root.local_endpoint.port = 10000
    child = spans.spans.add(
        trace_id=TRACE, id=envoy_id(CHILD_ID), parent_id=envoy_id(ROOT_ID), kind=1, name="router"
    )
    child.annotations.add(timestamp=9, value="upstream_reset")
    if child_error:
        child.tags["error"] = "true"
    return spans.SerializeToString()


def test_to_json_matches_envoys_json_and_its_b3_ids() -> None:
    root, child = (zipkin_proto.to_json(s) for s in zipkin_proto.parse(report()))
    assert root == {
        "traceId": TRACE.hex(),
        "id": f"{ROOT_ID:016x}",
        "kind": "SERVER",
        "name": "ingress",
        "timestamp": 7,
        "duration": 2500,
        "localEndpoint": {"serviceName": "ttsgw", "ipv4": "127.0.0.1", "port": 10000},
        "tags": {"http.status_code": "200", "response_flags": "-"},
    }
    assert child["parentId"] == f"{ROOT_ID:016x}" and child["id"] == f"{CHILD_ID:016x}"
    assert child["kind"] == "CLIENT"
    assert child["annotations"] == [{"timestamp": 9, "value": "upstream_reset"}]


@pytest.mark.parametrize(
    ("status", "flags", "child_error", "root_error", "went_away"),
    [
        ("200", "-", False, False, False),
        ("503", "UF", False, True, False),
        ("200", "-", True, False, False),
        ("0", "DC", True, False, True),
    ],
)
def test_digest_agrees_with_the_json_rules(
    status: str, flags: str, child_error: bool, root_error: bool, went_away: bool
) -> None:
    root, child = zipkin_proto.parse(report(status, flags, child_error))
    # Only the root carries a duration and the client-went-away mark.
    assert zipkin_proto.digest(root) == (TRACE.hex(), True, root_error, 0.0025, went_away)
    assert zipkin_proto.digest(child) == (TRACE.hex(), False, child_error, 0.0, False)
    for span in (root, child):
        assert zipkin_proto.digest(span) == digest_json(zipkin_proto.to_json(span))


def test_sampler_decides_protobuf_spans_and_keeps_them_as_messages() -> None:
    now = [0.0]
    policy = SamplerPolicy(ratio=0.0, grace_s=0.5)
    sampler = TailSampler(policy, lambda: now[0])
    sampler.add(zipkin_proto.parse(report("503")), zipkin_proto.digest)
    sampler.add(zipkin_proto.parse(report().replace(TRACE, TRACE[::-1])), zipkin_proto.digest)
    now[0] = 1.0
    out = sampler.flush_due()
    assert sorted(v.value for v in out.verdicts) == ["dropped", "kept_error"]
    assert [zipkin_proto.to_json(s)["traceId"] for s in out.forward] == [TRACE.hex()] * 2
    assert out.dropped == {"sampled_out": 2}
    assert out.verdict_counts()[Verdict.KEPT_ERROR] == 1


def test_garbage_is_a_decode_error_and_an_empty_trace_id_is_malformed() -> None:
    with pytest.raises(DecodeError):
        zipkin_proto.parse(b"\xff\xff\xff")
    (span,) = zipkin_proto.parse(zipkin_proto.ListOfSpans(spans=[{}]).SerializeToString())
    assert zipkin_proto.digest(span) is None
