"""The fleet registry and the snapshot cache: ACK waits, the public view, change notification."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest

from control_plane.errors import InconsistentSnapshotError
from control_plane.xds import testing
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.callbacks import StreamInfo
from control_plane.xds.fleet import Fleet
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.xds.snapshot import Snapshot

_ids = itertools.count(1)


class Stream:
    """Fires the fleet's callbacks the way one ADS stream would."""

    def __init__(self, fleet: Fleet, node_id: str, envoy_version: str = "1.40.0") -> None:
        self.fleet, self.id = fleet, next(_ids)
        fleet.on_stream_open(StreamInfo(self.id, node_id, "gw", envoy_version))

    def subscribe(self, type_url: str) -> None:
        self.fleet.on_subscribe(self.id, type_url)

    def sent(self, type_url: str, version: str) -> None:
        self.fleet.on_response_sent(self.id, type_url, version)

    def acked(self, type_url: str, version: str) -> None:
        self.fleet.on_ack(self.id, type_url, version, 0.01)

    def nacked(self, type_url: str, version: str, message: str) -> None:
        self.fleet.on_nack(self.id, type_url, version, message)

    def close(self) -> None:
        self.fleet.on_stream_close(self.id)


async def test_wait_for_ack_with_no_nodes_returns_at_once() -> None:
    waited = await Fleet().wait_for_ack({ROUTE: "v1"}, timeout=5)
    assert waited is not None and waited < 0.1


async def test_wait_for_ack_returns_the_time_until_every_node_acked() -> None:
    fleet = Fleet()
    a = Stream(fleet, "a")
    b = Stream(fleet, "b")
    for record in (a, b):
        record.subscribe(ROUTE)
        record.sent(ROUTE, "v1")

    async def ack_later() -> None:
        await asyncio.sleep(0.05)
        a.acked(ROUTE, "v1")
        await asyncio.sleep(0.05)
        b.acked(ROUTE, "v1")

    task = asyncio.create_task(ack_later())
    waited = await fleet.wait_for_ack({ROUTE: "v1"}, timeout=5)
    await task
    assert waited is not None and 0.09 < waited < 2


async def test_wait_for_ack_times_out() -> None:
    fleet = Fleet()
    record = Stream(fleet, "a")
    record.subscribe(ROUTE)
    record.sent(ROUTE, "v1")
    assert await fleet.wait_for_ack({ROUTE: "v1"}, timeout=0.05) is None


async def test_a_later_version_acked_counts_as_at_least() -> None:
    fleet = Fleet()
    record = Stream(fleet, "a")
    record.subscribe(ROUTE)
    record.sent(ROUTE, "v1")
    record.sent(ROUTE, "v2")  # v1 superseded before the ACK
    record.acked(ROUTE, "v2")
    assert fleet.converged({ROUTE: "v1"})
    # Going back to v1 (a restored revision) needs a fresh ACK of v1.
    record.sent(ROUTE, "v1")
    assert not fleet.converged({ROUTE: "v1"})
    record.acked(ROUTE, "v1")
    assert fleet.converged({ROUTE: "v1"})


async def test_unsubscribed_eds_and_rds_do_not_hold_convergence_back() -> None:
    fleet = Fleet()
    record = Stream(fleet, "a")
    record.subscribe(CLUSTER)
    record.sent(CLUSTER, "c1")
    record.acked(CLUSTER, "c1")
    assert fleet.converged({CLUSTER: "c1", ROUTE: "r1", ENDPOINT: "e1"})
    # LDS is always asked for by an ADS Envoy: not yet subscribed means not yet converged.
    assert not fleet.converged({CLUSTER: "c1", LISTENER: "l1"})


async def test_min_nodes_waits_for_the_first_envoy() -> None:
    fleet = Fleet()
    assert not fleet.converged({CLUSTER: "c1"}, min_nodes=1)
    assert await fleet.wait_for_ack({CLUSTER: "c1"}, timeout=0.05, min_nodes=1) is None

    def connect() -> None:
        record = Stream(fleet, "a")
        record.subscribe(CLUSTER)
        record.sent(CLUSTER, "c1")
        record.acked(CLUSTER, "c1")

    asyncio.get_running_loop().call_later(0.05, connect)
    assert await fleet.wait_for_ack({CLUSTER: "c1"}, timeout=5, min_nodes=1) is not None


async def test_disconnect_releases_waiters() -> None:
    fleet = Fleet()
    record = Stream(fleet, "a")
    record.subscribe(ROUTE)
    record.sent(ROUTE, "v1")
    asyncio.get_running_loop().call_later(0.05, record.close)
    assert await fleet.wait_for_ack({ROUTE: "v1"}, timeout=5) is not None


def test_public_view_groups_streams_by_node() -> None:
    fleet = Fleet()
    first = Stream(fleet, "a")
    second = Stream(fleet, "a")
    Stream(fleet, "b", "1.39.0")
    first.subscribe(ROUTE)
    first.sent(ROUTE, "v1")
    first.nacked(ROUTE, "v1", "bad route")
    second.subscribe(ROUTE)
    second.sent(ROUTE, "v0")
    second.acked(ROUTE, "v0")
    nodes = fleet.to_public()
    assert [n["node_id"] for n in nodes] == ["a", "b"]
    a = nodes[0]
    assert a["streams"] == 2
    assert a["cluster"] == "gw"
    assert isinstance(a["connected_at"], float)
    assert a["types"]["rds"]["acked"] == "v0"
    assert a["types"]["rds"]["nack"]["message"] == "bad route"
    assert a["types"]["rds"]["nack"]["version"] == "v1"
    assert nodes[1]["types"] == {}
    second.close()
    assert fleet.to_public()[0]["streams"] == 1
    first.close()
    assert [n["node_id"] for n in fleet.to_public()] == ["b"]


def test_an_inconsistent_snapshot_is_never_built_so_never_published() -> None:
    cache = SnapshotCache()
    resources = testing.canary({"stable": 100})
    broken = dataclasses.replace(resources, endpoints=())
    with pytest.raises(InconsistentSnapshotError):
        cache.set_snapshot(Snapshot.build(broken))
    assert cache.snapshot() is None


async def test_cache_wakes_waiters_only_on_a_new_version() -> None:
    cache = SnapshotCache()
    first = Snapshot.build(testing.canary({"stable": 100}))
    waiter = asyncio.create_task(cache.wait_for_change(None))
    await asyncio.sleep(0)
    assert cache.set_snapshot(first)
    assert (await waiter) is first
    waiter = asyncio.create_task(cache.wait_for_change(first.version))
    assert not cache.set_snapshot(Snapshot.build(testing.canary({"stable": 100})))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    second = Snapshot.build(testing.canary({"stable": 50, "canary": 50}))
    assert cache.set_snapshot(second)
    assert (await asyncio.wait_for(waiter, 1)) is second


def _running(fleet: Fleet, versions: dict[str, str]) -> Stream:
    record = Stream(fleet, "n")
    for type_url, version in versions.items():
        record.subscribe(type_url)
        record.sent(type_url, version)
        record.acked(type_url, version)
    return record


def test_a_restored_version_needs_a_fresh_ack() -> None:
    """A -> B -> A: the old ACK of A must not count while the node still runs B."""
    fleet = Fleet()
    record = _running(fleet, {CLUSTER: "c1", ROUTE: "A"})
    record.sent(ROUTE, "B")
    record.acked(ROUTE, "B")
    mark = fleet.mark()  # the restore of A is published after this point
    target = {CLUSTER: "c1", ROUTE: "A"}
    assert not fleet.converged(target, since=mark)
    record.sent(ROUTE, "A")
    assert not fleet.converged(target, since=mark)
    record.acked(ROUTE, "A")
    assert fleet.converged(target, since=mark)


def test_an_ack_of_a_later_push_counts_as_converged() -> None:
    fleet = Fleet()
    record = _running(fleet, {ROUTE: "v1"})
    mark = fleet.mark()
    record.sent(ROUTE, "v2")
    record.sent(ROUTE, "v3")  # v3 superseded v2
    record.acked(ROUTE, "v3")
    assert fleet.converged({ROUTE: "v2"}, since=mark)


def test_a_version_in_flight_is_not_yet_running() -> None:
    fleet = Fleet()
    record = _running(fleet, {ROUTE: "A"})
    record.sent(ROUTE, "B")
    mark = fleet.mark()  # B is replaced by A again before the node ACKs B
    assert not fleet.converged({ROUTE: "A"}, since=mark)


def test_hooks_for_a_stream_never_opened_are_ignored() -> None:
    fleet = Fleet()
    fleet.on_subscribe(999, ROUTE)
    fleet.on_response_sent(999, ROUTE, "v1")
    fleet.on_ack(999, ROUTE, "v1", 0.01)
    fleet.on_nack(999, ROUTE, "v1", "no")
    fleet.on_stream_close(999)
    assert fleet.to_public() == [] and fleet.stream_count == 0
