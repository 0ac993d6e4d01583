"""The span relay's verdicts: errors and slow roots always kept, the rest by the shared hash."""

from __future__ import annotations

from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from ttsgw_common.telemetry.relay import SamplerPolicy, TailSampler, Verdict
from ttsgw_common.telemetry.sampling import keeps

IN_RATIO = "0" * 16 + "0000000000000001"  # low 64 bits tiny: kept at any ratio > 0
OUT_OF_RATIO = "0" * 16 + "ffffffffffffffff"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def span(trace_id: str, span_id: str, parent: str | None = None, **tags: str) -> dict:
    s: dict = {"traceId": trace_id, "id": span_id, "duration": 1000, "tags": tags}
    if parent:
        s["parentId"] = parent
    return s


def sampler(
    ratio: float = 0.1, clock: Clock | None = None, max_spans: int = 100_000
) -> TailSampler:
    policy = SamplerPolicy(
        ratio=ratio, slow_threshold_s=1.0, grace_s=0.5, max_wait_s=5.0, max_spans=max_spans
    )
    return TailSampler(policy, clock or Clock())


def test_hash_matches_opentelemetry_trace_id_ratio_sampler() -> None:
    for ratio in (0.0, 0.1, 0.5, 1.0):
        otel = TraceIdRatioBased(ratio)
        for i in range(2000):
            trace_id = (i * 0x9E3779B97F4A7C15 * 7919) % (1 << 128)
            decision = otel.should_sample(None, trace_id, "x").decision
            assert keeps(trace_id, ratio) == (decision is Decision.RECORD_AND_SAMPLE)
            assert keeps(f"{trace_id:032x}", ratio) == keeps(trace_id, ratio)


def test_ratio_keeps_about_the_ratio() -> None:
    kept = sum(keeps(f"{(i * 0x9E3779B97F4A7C15) % (1 << 64):032x}", 0.1) for i in range(10000))
    assert 900 < kept < 1100


def test_decides_after_grace_following_the_root() -> None:
    clock = Clock()
    s = sampler(ratio=1.0, clock=clock)
    out = s.add([span(IN_RATIO, "b", parent="a"), span(IN_RATIO, "a")])
    assert out.forward == [] and s.buffered_spans == 2
    clock.now = 0.4
    assert s.flush_due().forward == []
    clock.now = 0.6
    out = s.flush_due()
    assert [x["id"] for x in out.forward] == ["b", "a"]
    assert out.verdicts == [Verdict.KEPT_RATIO]
    # A straggler follows the verdict at once.
    assert [x["id"] for x in s.add([span(IN_RATIO, "c", parent="a")]).forward] == ["c"]


def test_error_span_keeps_the_trace_at_zero_ratio() -> None:
    clock = Clock()
    s = sampler(ratio=0.0, clock=clock)
    s.add([span(OUT_OF_RATIO, "a"), span(OUT_OF_RATIO, "b", parent="a", error="input_too_long")])
    clock.now = 1
    out = s.flush_due()
    assert out.verdicts == [Verdict.KEPT_ERROR]
    assert len(out.forward) == 2


def test_root_with_4xx_or_5xx_is_an_error() -> None:
    clock = Clock()
    s = sampler(ratio=0.0, clock=clock)
    s.add([span(OUT_OF_RATIO, "a", **{"http.status_code": "503"})])
    clock.now = 1
    assert s.flush_due().verdicts == [Verdict.KEPT_ERROR]


# Tags seen on a request cut by its client (wrk stopping mid-flight), verbatim: the relay
# used to keep every such trace as an error although nothing failed.
CLIENT_WENT_AWAY = {"error": "true", "http.status_code": "0", "response_flags": "DC"}
ROUTER_CUT = {"error": "true", "http.status_code": "0", "response_flags": "-"}
WORKER_CUT = {"error": "http_499", "http.status_code": "499"}


def test_client_disconnect_and_its_cascade_are_not_errors() -> None:
    clock = Clock()
    s = sampler(ratio=0.0, clock=clock)
    # The worker's and the router's spans arrive before Envoy's root, as they do for real.
    s.add([span(OUT_OF_RATIO, "w", "r", **WORKER_CUT), span(OUT_OF_RATIO, "r", "a", **ROUTER_CUT)])
    s.add([span(OUT_OF_RATIO, "a", **CLIENT_WENT_AWAY)])
    clock.now = 1
    assert s.flush_due().verdicts == [Verdict.DROPPED]


def test_client_disconnect_still_kept_when_slow_or_when_the_gateway_failed() -> None:
    clock = Clock()
    s = sampler(ratio=0.0, clock=clock)
    gave_up = span(OUT_OF_RATIO, "a", **CLIENT_WENT_AWAY)
    gave_up["duration"] = 30_000_000  # the client timed out on a slow request
    s.add([gave_up])
    # Flags beside DC (an upstream reset) or an answer already sent mean we failed too.
    for trace_id, tags in (
        ("3" * 32, {"response_flags": "DC,UR"}),
        ("4" * 32, {"http.status_code": "503"}),
    ):
        s.add([span(trace_id, "u", **{**CLIENT_WENT_AWAY, **tags})])
    clock.now = 1
    verdicts = sorted(v.value for v in s.flush_due().verdicts)
    assert verdicts == ["kept_error", "kept_error", "kept_slow"]


def test_slow_root_is_kept_and_ordinary_one_dropped() -> None:
    clock = Clock()
    s = sampler(ratio=0.0, clock=clock)
    slow = span(OUT_OF_RATIO, "a")
    slow["duration"] = 1_500_000  # µs
    fast_id = "1" * 32
    s.add([slow, span(fast_id, "x"), span(fast_id, "y", parent="x")])
    clock.now = 1
    out = s.flush_due()
    assert sorted(v.value for v in out.verdicts) == ["dropped", "kept_slow"]
    assert [x["id"] for x in out.forward] == ["a"]
    assert out.dropped == {"sampled_out": 2}
    assert s.add([span(fast_id, "z", parent="x")]).dropped == {"sampled_out": 1}


def test_trace_without_root_is_decided_after_max_wait() -> None:
    clock = Clock()
    s = sampler(ratio=1.0, clock=clock)
    s.add([span(IN_RATIO, "b", parent="a")])
    clock.now = 4.9
    assert s.flush_due().verdicts == []
    clock.now = 5.1
    assert s.flush_due().verdicts == [Verdict.KEPT_RATIO]


def test_buffer_is_bounded_by_deciding_the_oldest_early() -> None:
    s = sampler(ratio=0.0, max_spans=3)
    out = s.add([span(f"{i:032x}", "a", parent="p") for i in range(1, 6)])
    assert s.buffered_spans == 3
    assert out.dropped == {"sampled_out": 2}


def test_malformed_spans_are_counted() -> None:
    assert sampler().add([{"id": "a"}]).dropped == {"malformed": 1}
