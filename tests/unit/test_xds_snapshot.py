"""Snapshot versioning, the consistency check and the pre-encoded DiscoveryResponse bytes."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse

from control_plane.errors import InconsistentSnapshotError
from control_plane.xds import testing
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resources
from control_plane.xds.snapshot import Snapshot, with_nonce


def test_same_content_same_version_whatever_the_order() -> None:
    a = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    resources = testing.canary({"stable": 90, "canary": 10})
    reordered = dataclasses.replace(resources, clusters=tuple(reversed(resources.clusters)))
    b = Snapshot.build(reordered)
    assert a.version == b.version
    assert a.versions == b.versions
    assert len(a.version) == 16


def test_weight_change_changes_only_the_route_version() -> None:
    before = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    after = Snapshot.build(testing.canary({"stable": 50, "canary": 50}))
    changed = {t for t in before.versions if before.versions[t] != after.versions[t]}
    assert changed == {ROUTE}
    assert before.version != after.version


def test_consistent_snapshot_passes() -> None:
    Snapshot.build(testing.canary({"stable": 90, "canary": 10})).consistent()


def test_route_to_missing_cluster_is_inconsistent() -> None:
    resources = testing.canary({"stable": 100})
    broken = dataclasses.replace(
        resources, routes=(testing.route_config("routes", {"stable": 1, "ghost": 1}),)
    )
    with pytest.raises(InconsistentSnapshotError, match="ghost"):
        Snapshot.build(broken).consistent()


def test_single_cluster_route_to_missing_cluster_is_inconsistent() -> None:
    resources = testing.canary({"stable": 100})
    broken = dataclasses.replace(resources, routes=(testing.route_config("routes", {"ghost": 1}),))
    with pytest.raises(InconsistentSnapshotError, match="ghost"):
        Snapshot.build(broken).consistent()


def test_eds_cluster_without_assignment_is_inconsistent() -> None:
    resources = testing.canary({"stable": 90, "canary": 10})
    broken = dataclasses.replace(
        resources, endpoints=tuple(e for e in resources.endpoints if e.cluster_name != "canary")
    )
    with pytest.raises(InconsistentSnapshotError, match="canary"):
        Snapshot.build(broken).consistent()


def test_eds_service_name_is_the_assignment_name() -> None:
    cluster = testing.eds_cluster("svc")
    cluster.eds_cluster_config.service_name = "svc-endpoints"
    ok = Resources(clusters=(cluster,), endpoints=(testing.assignment("svc-endpoints"),))
    Snapshot.build(ok).consistent()
    broken = Resources(clusters=(cluster,), endpoints=(testing.assignment("svc"),))
    with pytest.raises(InconsistentSnapshotError, match="svc-endpoints"):
        Snapshot.build(broken).consistent()


def test_static_cluster_needs_no_assignment() -> None:
    Snapshot.build(Resources(clusters=(testing.static_cluster("s"),))).consistent()


def test_listener_with_missing_route_config_is_inconsistent() -> None:
    resources = testing.canary({"stable": 100})
    broken = dataclasses.replace(resources, listeners=(testing.listener("in", "nowhere", 10000),))
    with pytest.raises(InconsistentSnapshotError, match="nowhere"):
        Snapshot.build(broken).consistent()


def test_duplicate_names_are_rejected() -> None:
    twice = Resources(clusters=(testing.static_cluster("s"), testing.static_cluster("s")))
    with pytest.raises(InconsistentSnapshotError, match="duplicate"):
        Snapshot.build(twice)


def test_encoded_body_parses_back_to_the_expected_response() -> None:
    snap = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    typed = snap.types[CLUSTER]
    response = DiscoveryResponse.FromString(with_nonce(typed.body(None), "7"))
    assert response.version_info == typed.version
    assert response.type_url == CLUSTER
    assert response.nonce == "7"
    names = []
    for packed in response.resources:
        assert packed.type_url == CLUSTER
        cluster = Cluster()
        assert packed.Unpack(cluster)
        assert cluster == typed.messages[cluster.name]
        names.append(cluster.name)
    assert names == ["canary", "stable"]

    expected = DiscoveryResponse(version_info=typed.version, type_url=CLUSTER, nonce="7")
    for name in ("canary", "stable"):
        expected.resources.add().Pack(typed.messages[name])
    assert response == expected


def test_body_for_named_subscription_has_only_those_names() -> None:
    snap = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    typed = snap.types[ENDPOINT]
    response = DiscoveryResponse.FromString(typed.body(frozenset({"canary", "unknown"})))
    assert len(response.resources) == 1
    assert response.nonce == ""
    routes = DiscoveryResponse.FromString(snap.types[ROUTE].body(frozenset({"routes"})))
    config = RouteConfiguration()
    routes.resources[0].Unpack(config)
    assert config.name == "routes"


def test_body_is_encoded_once_per_name_set() -> None:
    snap = Snapshot.build(testing.canary({"stable": 90, "canary": 10}))
    typed = snap.types[LISTENER]
    assert typed.body(None) is typed.body(None)
    assert typed.body(frozenset({"ingress"})) is typed.body(frozenset({"ingress"}))


def test_empty_snapshot_encodes() -> None:
    snap = Snapshot.build(Resources())
    snap.consistent()
    response = DiscoveryResponse.FromString(snap.types[CLUSTER].body(None))
    assert response.type_url == CLUSTER
    assert len(response.resources) == 0
