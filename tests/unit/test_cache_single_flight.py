"""Single-flight: one leader per key, followers share its value or fall back on None."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.cache.single_flight import SingleFlight
from ttsgw_contract.cache import CachedResponse

WAV = CachedResponse(body=b"RIFF-audio", content_type="audio/wav", backend="espeak")


async def test_sixteen_concurrent_joins_make_one_leader_and_followers_get_its_value() -> None:
    flights = SingleFlight()
    leaders = 0
    started = asyncio.Event()

    async def request() -> CachedResponse | None:
        nonlocal leaders
        flight = flights.join("k")
        if flight.leader:
            leaders += 1
            await started.wait()  # everybody has joined before the "backend" answers
            await asyncio.sleep(0.01)
            flight.finish(WAV)
            return WAV
        return await flight.wait(timeout_s=5)

    tasks = [asyncio.create_task(request()) for _ in range(16)]
    await asyncio.sleep(0)  # let all 16 join
    assert flights.in_flight() == 1
    started.set()
    results = await asyncio.gather(*tasks)
    assert leaders == 1
    assert results == [WAV] * 16
    assert flights.in_flight() == 0


async def test_leader_failure_releases_followers_promptly_with_none() -> None:
    flights = SingleFlight()
    leader = flights.join("k")
    followers = [flights.join("k") for _ in range(5)]
    assert leader.leader and not any(f.leader for f in followers)
    waits = [asyncio.create_task(f.wait(timeout_s=10)) for f in followers]
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    leader.finish(None)
    assert await asyncio.gather(*waits) == [None] * 5
    assert time.perf_counter() - t0 < 0.1


async def test_follower_timeout_returns_none() -> None:
    flights = SingleFlight()
    leader = flights.join("k")
    t0 = time.perf_counter()
    assert await flights.join("k").wait(timeout_s=0.05) is None
    assert 0.04 < time.perf_counter() - t0 < 0.5
    assert not leader.done


async def test_a_join_after_finish_starts_a_new_flight() -> None:
    flights = SingleFlight()
    first = flights.join("k")
    first.finish(WAV)
    second = flights.join("k")
    assert second.leader
    follower = flights.join("k")
    assert not follower.leader
    second.finish(None)
    assert await follower.wait(1) is None


async def test_keys_are_independent() -> None:
    flights = SingleFlight()
    assert flights.join("a").leader
    assert flights.join("b").leader
    assert not flights.join("a").leader


async def test_finish_is_idempotent_so_finally_finish_none_is_safe() -> None:
    flights = SingleFlight()
    leader = flights.join("k")
    follower = flights.join("k")
    try:
        leader.finish(WAV)
    finally:
        leader.finish(None)  # the stream loop's safety net must not undo the real value
    assert await follower.wait(1) == WAV


async def test_context_manager_finishes_a_vanished_leader() -> None:
    flights = SingleFlight()
    with pytest.raises(ConnectionResetError), flights.join("k") as flight:
        assert flight.leader
        follower = flights.join("k")
        raise ConnectionResetError("client went away")
    assert await follower.wait(1) is None
    assert flights.join("k").leader


async def test_roles_are_enforced() -> None:
    flights = SingleFlight()
    leader = flights.join("k")
    follower = flights.join("k")
    with pytest.raises(RuntimeError):
        follower.finish(WAV)
    with pytest.raises(RuntimeError):
        await leader.wait(1)


async def test_a_stale_flight_is_replaced_and_cannot_drop_its_successor() -> None:
    now = [0.0]
    flights = SingleFlight(stale_after_s=30, clock=lambda: now[0])
    leaked = flights.join("k")
    now[0] = 31.0
    fresh = flights.join("k")
    assert fresh.leader
    leaked.finish(None)  # late: must not forget the fresh flight
    assert not flights.join("k").leader
    fresh.finish(WAV)
    assert flights.in_flight() == 0


async def test_abandon_all_releases_every_follower() -> None:
    flights = SingleFlight()
    flights.join("a")
    flights.join("b")
    waits = [asyncio.create_task(flights.join(k).wait(10)) for k in ("a", "b")]
    await asyncio.sleep(0)
    flights.abandon_all()
    assert await asyncio.gather(*waits) == [None, None]
    assert flights.in_flight() == 0
