"""The scheduler's queues: priority order, aging, limits, the shed order and timeouts."""

from __future__ import annotations

import pytest

from tts_backends.engines.base import SynthesisRequest
from tts_backends.scheduler.drain import DrainRate
from tts_backends.scheduler.levels import parse_level
from tts_backends.scheduler.policy import SchedulerPolicy
from tts_backends.scheduler.queue import LevelQueues, Rejected
from tts_backends.scheduler.ticket import Ticket


def ticket(level: str, arrived: float, text: str = "") -> Ticket:
    return Ticket(SynthesisRequest(text=text or f"{level}@{arrived}", voice="v"), level, arrived)


def drain(queues: LevelQueues, now: float) -> list[str]:
    order = []
    while (t := queues.pop(now)) is not None:
        order.append(t.request.text)
    return order


def test_header_values_map_to_levels_and_anything_else_is_default() -> None:
    assert [parse_level(v) for v in ("high", " LOW ", "default")] == ["high", "low", "default"]
    assert parse_level(None) == parse_level("urgent") == parse_level("") == "default"


def test_higher_levels_go_first_and_each_level_is_fifo() -> None:
    q = LevelQueues(SchedulerPolicy(aging_s=0))
    for i, level in enumerate(["low", "default", "high", "low", "high", "default"]):
        q.push(ticket(level, float(i), f"{level}{i}"))
    assert drain(q, 10.0) == ["high2", "high4", "default1", "default5", "low0", "low3"]


def test_aging_lifts_a_waiting_low_request_above_newer_high_ones() -> None:
    q = LevelQueues(SchedulerPolicy(aging_s=5.0))
    q.push(ticket("low", 0.0, "old-low"))
    q.push(ticket("high", 9.0, "new-high"))
    # At t=9.5 the low request has waited 9.5 s: one level up (default), still below high.
    assert q.peek(9.5).request.text == "new-high"  # type: ignore[union-attr]
    # At t=10 it has waited two aging periods: rank 0, and it arrived first.
    assert drain(q, 10.0) == ["old-low", "new-high"]


def test_no_starvation_under_a_steady_stream_of_high_requests() -> None:
    q = LevelQueues(SchedulerPolicy(aging_s=1.0))
    q.push(ticket("low", 0.0, "low"))
    served = []
    for step in range(100):
        now = step * 0.1
        q.push(ticket("high", now, f"high{step}"))
        served.append(q.pop(now).request.text)  # type: ignore[union-attr]
        if "low" in served:
            break
    # Served after two aging periods (2 s of waiting), not never.
    assert served[-1] == "low" and len(served) <= 22


def test_a_full_level_refuses_only_that_level() -> None:
    policy = SchedulerPolicy(queue_limits={"high": 1, "default": 1, "low": 1})
    q = LevelQueues(policy)
    q.push(ticket("low", 0.0))
    with pytest.raises(Rejected) as exc:
        q.push(ticket("low", 1.0))
    assert exc.value.reason == "queue_full"
    q.push(ticket("high", 2.0))
    assert q.depths() == {"high": 1, "default": 0, "low": 1}


def test_when_full_an_arrival_evicts_the_newest_request_of_the_lowest_level() -> None:
    q = LevelQueues(SchedulerPolicy(max_queue_depth=3, aging_s=0))
    q.push(ticket("default", 0.0, "d0"))
    q.push(ticket("low", 1.0, "l1"))
    q.push(ticket("low", 2.0, "l2"))
    evicted = q.push(ticket("high", 3.0, "h3"))
    assert evicted is not None and evicted.request.text == "l2"
    evicted = q.push(ticket("default", 4.0, "d4"))
    assert evicted is not None and evicted.request.text == "l1"
    # Only default and high are left: a default arrival finds nothing lower to evict.
    evicted = q.push(ticket("high", 5.0, "h5"))
    assert evicted is not None and evicted.request.text == "d4"
    with pytest.raises(Rejected):
        q.push(ticket("default", 6.0, "d6"))
    assert drain(q, 7.0) == ["h3", "h5", "d0"]


def test_requests_past_their_level_timeout_expire_low_first() -> None:
    policy = SchedulerPolicy(queue_timeouts_s={"high": 30, "default": 20, "low": 10})
    q = LevelQueues(policy)
    for level in ("high", "default", "low"):
        q.push(ticket(level, 0.0, level))
    assert [t.request.text for t in q.expire(15.0)] == ["low"]
    assert [t.request.text for t in q.expire(25.0)] == ["default"]
    assert q.depths() == {"high": 1, "default": 0, "low": 0}


def test_drain_rate_and_retry_after() -> None:
    rate = DrainRate(window_s=10.0)
    assert rate.rate(0.0) is None
    assert rate.retry_after_s(100, 0.0) == 1  # nothing measured yet: the minimum
    for i in range(21):
        rate.record(i * 0.5)  # 2 per second for 10 s
    assert rate.rate(10.0) == pytest.approx(2.1, rel=0.01)
    assert rate.retry_after_s(40, 10.0) == 20
    assert rate.retry_after_s(10_000, 10.0) == 60  # capped
    assert rate.rate(30.0) is None  # the window emptied


def test_policy_needs_every_level() -> None:
    with pytest.raises(ValueError, match="queue_limits"):
        SchedulerPolicy(queue_limits={"high": 1, "default": 1})
