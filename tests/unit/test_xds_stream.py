"""The ADS stream state machine, driven by scripted DiscoveryRequests (no gRPC)."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from google.rpc.status_pb2 import Status
from prometheus_client import CollectorRegistry

from control_plane.xds import testing
from control_plane.xds.callbacks import Callbacks, Fanout, StreamInfo
from control_plane.xds.errors import ProtocolError
from control_plane.xds.fleet import Fleet
from control_plane.xds.metrics import XdsMetrics
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.stream import AdsStream, Push


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def names_in(push: Push) -> list[str]:
    response = DiscoveryResponse.FromString(push.data)
    assert response.nonce == push.nonce
    assert response.version_info == push.version
    assert response.type_url == push.type_url
    out = []
    for packed in response.resources:
        if push.type_url == CLUSTER:
            cluster = Cluster()
            packed.Unpack(cluster)
            out.append(cluster.name)
        else:
            out.append(packed.type_url)
    return out


class Harness:
    """One stream plus what a well-behaved Envoy would remember: last push per type."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.registry = CollectorRegistry()
        self.fleet = Fleet()
        self.clock = FakeClock()
        callbacks = Fanout((self.fleet, XdsMetrics(self.registry)))
        self.stream = AdsStream(callbacks, snapshot, clock=self.clock)
        self.last: dict[str, Push] = {}
        self.acked: dict[str, str] = {}
        self.first = True

    def _remember(self, pushes: list[Push]) -> list[Push]:
        for push in pushes:
            self.last[push.type_url] = push
        return pushes

    def request(self, type_url: str, names: tuple[str, ...] = (), **fields: object) -> list[Push]:
        request = DiscoveryRequest(type_url=type_url, resource_names=names, **fields)  # type: ignore[arg-type]
        if self.first:
            request.node.CopyFrom(Node(id="envoy-1", cluster="gw", user_agent_version="1.40.0"))
            self.first = False
        return self._remember(self.stream.on_request(request))

    def subscribe(self, type_url: str, names: tuple[str, ...] = ()) -> list[Push]:
        return self.request(type_url, names)

    def ack(self, type_url: str, names: tuple[str, ...] = ()) -> list[Push]:
        push = self.last[type_url]
        self.acked[type_url] = push.version
        return self.request(type_url, names, version_info=push.version, response_nonce=push.nonce)

    def nack(self, type_url: str, message: str, names: tuple[str, ...] = ()) -> list[Push]:
        push = self.last[type_url]
        return self.request(
            type_url,
            names,
            version_info=self.acked.get(type_url, ""),
            response_nonce=push.nonce,
            error_detail=Status(code=3, message=message),
        )

    def snapshot(self, snapshot: Snapshot) -> list[Push]:
        return self._remember(self.stream.on_snapshot(snapshot))

    def connect_all(self) -> None:
        """Subscribe and ACK every type the way Envoy does on startup."""
        assert [p.type_url for p in self.subscribe(CLUSTER)] == [CLUSTER]
        self.ack(CLUSTER)
        assert [p.type_url for p in self.subscribe(ENDPOINT, ("canary", "stable"))] == [ENDPOINT]
        self.ack(ENDPOINT, ("canary", "stable"))
        assert [p.type_url for p in self.subscribe(LISTENER)] == [LISTENER]
        self.ack(LISTENER)
        assert [p.type_url for p in self.subscribe(ROUTE, ("routes",))] == [ROUTE]
        self.ack(ROUTE, ("routes",))

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def snap(weights: dict[str, int]) -> Snapshot:
    return Snapshot.build(testing.canary(weights))


V1 = {"stable": 90, "canary": 10}


def test_nothing_is_sent_before_subscription_or_snapshot() -> None:
    h = Harness(None)
    assert h.subscribe(CLUSTER) == []
    pushes = h.snapshot(snap(V1))
    assert [p.type_url for p in pushes] == [CLUSTER]  # only the subscribed type


def test_connect_ack_and_fleet_record() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    [node] = h.fleet.snapshot()
    assert node["node_id"] == "envoy-1"
    assert node["cluster"] == "gw"
    assert node["envoy_version"] == "1.40.0"
    assert node["streams"] == 1
    for short, type_url in zip(("cds", "eds", "lds", "rds"), PUSH_ORDER, strict=True):
        assert node["types"][short]["sent"] == h.acked[type_url]
        assert node["types"][short]["acked"] == h.acked[type_url]
        assert node["types"][short]["nack"] is None
    assert h.metric("ttsgw_xds_pushes_total", type="cds") == 1
    assert h.metric("ttsgw_xds_convergence_seconds_count", type="rds") == 1
    assert h.fleet.converged(snap(V1).versions)


def test_eds_sends_only_requested_names_and_resends_on_name_change() -> None:
    h = Harness(snap(V1))
    h.subscribe(CLUSTER)
    h.ack(CLUSTER)
    [push] = h.subscribe(ENDPOINT, ("canary",))
    assert len(names_in(push)) == 1
    [again] = h.ack(ENDPOINT, ("canary", "stable"))  # same version, more names
    assert again.version == push.version
    assert len(names_in(again)) == 2
    assert h.ack(ENDPOINT, ("canary", "stable")) == []


def test_empty_names_on_eds_is_not_wildcard() -> None:
    h = Harness(snap(V1))
    assert h.subscribe(ENDPOINT) == []
    [push] = h.request(ENDPOINT, ("stable",))
    assert len(names_in(push)) == 1


def test_convergence_is_measured_to_the_ack() -> None:
    h = Harness(snap(V1))
    h.subscribe(CLUSTER)
    h.clock.now += 0.25
    h.ack(CLUSTER)
    assert h.metric("ttsgw_xds_convergence_seconds_sum", type="cds") == pytest.approx(0.25)


def test_weight_change_is_an_rds_only_push() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    pushes = h.snapshot(snap({"stable": 50, "canary": 50}))
    assert [p.type_url for p in pushes] == [ROUTE]


def test_full_change_pushes_in_make_before_break_order() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    changed = testing.canary({"stable": 80, "canary": 20}, listener_port=10001)
    changed = dataclasses.replace(
        changed, endpoints=tuple(testing.assignment(c, port=9000) for c in ("canary", "stable"))
    )
    changed.clusters[0].connect_timeout.seconds = 3
    pushes = h.snapshot(Snapshot.build(changed))
    assert [p.type_url for p in pushes] == list(PUSH_ORDER)
    assert len({p.nonce for p in pushes}) == 4


def test_stale_nonce_is_ignored() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    old_push = h.last[ROUTE]
    h.snapshot(snap({"stable": 50, "canary": 50}))
    # A late ACK of the superseded response (old nonce) changes nothing.
    stale = h.request(
        ROUTE, ("routes",), version_info=old_push.version, response_nonce=old_push.nonce
    )
    assert stale == []
    [node] = h.fleet.snapshot()
    assert node["types"]["rds"]["acked"] == old_push.version
    # Even a stale NACK is not recorded.
    h.request(
        ROUTE,
        ("routes",),
        response_nonce=old_push.nonce,
        error_detail=Status(code=3, message="late"),
    )
    assert h.fleet.snapshot()[0]["types"]["rds"]["nack"] is None


def test_nack_is_recorded_and_not_resent() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    good_rds = h.acked[ROUTE]
    [bad] = h.snapshot(snap({"stable": 50, "canary": 50}))
    assert h.nack(ROUTE, "route says no", ("routes",)) == []
    # Envoy re-sends its request; still nothing for the rejected version.
    assert h.request(ROUTE, ("routes",), version_info=good_rds, response_nonce=bad.nonce) == []
    [node] = h.fleet.snapshot()
    rds = node["types"]["rds"]
    assert rds["acked"] == good_rds
    assert rds["sent"] == bad.version
    assert rds["nack"]["version"] == bad.version
    assert rds["nack"]["message"] == "route says no"
    assert h.metric("ttsgw_xds_nacks_total", type="rds") == 1
    assert not h.fleet.converged({ROUTE: bad.version})
    # The same rejected content again (new snapshot object, same version): not resent.
    assert h.snapshot(snap({"stable": 50, "canary": 50})) == []
    # A new version is sent.
    [fixed] = h.snapshot(snap({"stable": 60, "canary": 40}))
    assert fixed.type_url == ROUTE
    assert fixed.version != bad.version


def test_stale_clusters_are_removed_last() -> None:
    h = Harness(snap({"stable": 90, "canary": 10}))
    h.connect_all()
    # Drops "canary", which the ACKed routes still use, and changes "stable" so CDS must go out.
    resources = testing.canary({"stable": 100})
    resources.clusters[0].connect_timeout.seconds = 5
    promoted = Snapshot.build(resources)
    pushes = h.snapshot(promoted)
    assert [p.type_url for p in pushes] == [CLUSTER, ENDPOINT, ROUTE]
    cds, eds, _rds = pushes
    assert sorted(names_in(cds)) == ["canary", "stable"]  # new ∪ still referenced
    assert len(names_in(eds)) == 2
    assert h.stream.kept_clusters == {"canary"}
    # Envoy ACKs CDS and EDS: the old cluster stays.
    assert h.ack(CLUSTER) == []
    # Envoy keeps asking for the kept cluster's endpoints: still served, no new push.
    assert h.ack(ENDPOINT, ("canary", "stable")) == []
    # Only after the routes that no longer use it are ACKed is it removed.
    after_rds = h.ack(ROUTE, ("routes",))
    assert [p.type_url for p in after_rds] == [CLUSTER, ENDPOINT]
    assert names_in(after_rds[0]) == ["stable"]
    assert after_rds[0].version == promoted.versions[CLUSTER]
    assert h.stream.kept_clusters == frozenset()
    h.ack(CLUSTER)
    assert h.ack(ENDPOINT, ("canary", "stable")) == []
    # Envoy then drops the removed cluster's endpoints from its subscription: answered anew.
    [narrowed] = h.request(
        ENDPOINT,
        ("stable",),
        version_info=h.last[ENDPOINT].version,
        response_nonce=h.last[ENDPOINT].nonce,
    )
    assert len(names_in(narrowed)) == 1
    assert h.ack(ENDPOINT, ("stable",)) == []
    assert h.fleet.converged(promoted.versions)


def test_dropping_a_used_cluster_alone_sends_no_cds_until_routes_move() -> None:
    h = Harness(snap({"stable": 90, "canary": 10}))
    h.connect_all()
    promoted = snap({"stable": 100})
    # CDS with the kept cluster is byte-for-byte what Envoy runs, so it is not re-sent.
    pushes = h.snapshot(promoted)
    assert [p.type_url for p in pushes] == [ENDPOINT, ROUTE]
    h.ack(ENDPOINT, ("canary", "stable"))
    [cds, eds] = h.ack(ROUTE, ("routes",))
    assert (cds.type_url, names_in(cds)) == (CLUSTER, ["stable"])
    assert eds.type_url == ENDPOINT


def test_kept_cluster_survives_rejected_routes() -> None:
    h = Harness(snap({"stable": 90, "canary": 10}))
    h.connect_all()
    h.snapshot(snap({"stable": 100}))
    h.ack(CLUSTER)
    h.ack(ENDPOINT, ("canary", "stable"))
    assert h.nack(ROUTE, "nope", ("routes",)) == []
    assert h.stream.kept_clusters == {"canary"}  # the Envoy still runs routes that use it


def test_first_request_without_node_is_a_protocol_error() -> None:
    h = Harness(snap(V1))
    with pytest.raises(ProtocolError):
        h.stream.on_request(DiscoveryRequest(type_url=CLUSTER))


def test_close_removes_the_node() -> None:
    h = Harness(snap(V1))
    h.connect_all()
    h.stream.close()
    assert h.fleet.snapshot() == []


class Recorder(Callbacks):
    """A subscriber that keeps only the order of the hooks it heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    def on_stream_open(self, stream: StreamInfo) -> None:
        self.heard.append(("open", stream.node_id))

    def on_subscribe(self, stream_id: int, type_url: str) -> None:
        self.heard.append(("subscribe", type_url))

    def on_response_sent(self, stream_id: int, type_url: str, version: str) -> None:
        self.heard.append(("sent", type_url))

    def on_ack(self, stream_id: int, type_url: str, version: str, after_s: float | None) -> None:
        self.heard.append(("ack", type_url))

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        self.heard.append(("nack", message))

    def on_stream_close(self, stream_id: int) -> None:
        self.heard.append(("close", str(stream_id)))


def test_every_subscriber_hears_the_stream_in_order() -> None:
    recorder = Recorder()
    stream = AdsStream(Fanout((Fleet(), recorder)), snap(V1))
    request = DiscoveryRequest(type_url=CLUSTER)
    request.node.CopyFrom(Node(id="envoy-1", cluster="gw", user_agent_version="1.40.0"))
    [push] = stream.on_request(request)
    stream.on_request(
        DiscoveryRequest(
            type_url=CLUSTER,
            version_info=push.version,
            response_nonce=push.nonce,
            error_detail=Status(code=3, message="no"),
        )
    )
    stream.close()
    stream.close()  # a second close reports nothing
    assert recorder.heard == [
        ("open", "envoy-1"),
        ("subscribe", CLUSTER),
        ("sent", CLUSTER),
        ("nack", "no"),
        ("close", str(stream.stream_id)),
    ]


def test_a_reconnecting_envoys_claimed_version_is_not_timed() -> None:
    h = Harness(snap(V1))
    h.request(CLUSTER, version_info="c-old")
    [node] = h.fleet.snapshot()
    assert node["types"]["cds"]["acked"] == "c-old"
    assert h.metric("ttsgw_xds_convergence_seconds_count", type="cds") == 0
