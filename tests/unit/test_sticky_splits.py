"""Sticky A/B splits: the header name's rules, and the hash policy on every route of the model."""

from __future__ import annotations

import pytest
from envoy.config.route.v3.route_components_pb2 import Route, RouteAction
from pydantic import ValidationError

from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelPublic,
    ModelSpec,
    PriorityClassSpec,
    Split,
)
from control_plane.translator import TranslatorOptions, retranslate, translate
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.xds.snapshot import Snapshot
from ttsgw.ops.views.config import model_detail

OPTIONS = TranslatorOptions()
AB = [Split(backend="a", weight=70), Split(backend="b", weight=30)]


def _state(sticky: str | None = "x-user-id", splits: list[Split] = AB) -> DesiredState:
    return DesiredState(
        backends={
            name: BackendSpec(endpoints=[Endpoint(host="127.0.0.1", port=9000 + i)])
            for i, name in enumerate(["a", "b", "plain"])
        },
        models={
            "m": ModelSpec(splits=splits, sticky_header=sticky),
            "plain": ModelSpec(splits=[Split(backend="plain", weight=1)]),
        },
        default_model="m",
        priority_classes={"gold": PriorityClassSpec(level="high")},
    )


def _routes(state: DesiredState) -> dict[str, Route]:
    (rc,) = translate(state, OPTIONS).routes
    return {r.name: r for r in rc.virtual_hosts[0].routes}


@pytest.mark.parametrize("name", ["x-user-id", "cookie", "x-ab-bucket-2", "authorization"])
def test_header_names_that_clients_can_send_are_accepted(name: str) -> None:
    assert ModelSpec(splits=AB, sticky_header=name).sticky_header == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("X-User-Id", "should match pattern"),  # Envoy matches lower case; say so, don't guess
        (":authority", "should match pattern"),
        ("x user", "should match pattern"),
        ("x_user_id", "should match pattern"),  # proxies drop underscores
        ("", "should match pattern"),
        ("x-" + "a" * 200, "should match pattern"),
        ("x-tts-class", "reserved"),  # the filter strips client x-tts-* headers
        ("x-envoy-original-path", "reserved"),
    ],
)
def test_bad_or_reserved_header_names_are_rejected_naming_the_field(
    name: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        ModelSpec.model_validate({"splits": [{"backend": "a", "weight": 1}], "sticky_header": name})
    assert err.value.errors()[0]["loc"][0] == "sticky_header"


def test_sticky_model_hashes_the_header_to_pick_its_weighted_cluster() -> None:
    route = _routes(_state())["model:m"]
    weighted = route.route.weighted_clusters
    assert [(c.name, c.weight.value) for c in weighted.clusters] == [("a", 70), ("b", 30)]
    assert weighted.WhichOneof("random_value_specifier") == "use_hash_policy"
    assert weighted.use_hash_policy.value is True
    (policy,) = route.route.hash_policy
    assert policy.WhichOneof("policy_specifier") == "header"
    assert policy.header.header_name == "x-user-id"
    assert not policy.terminal


def test_every_route_of_a_sticky_model_is_sticky_and_others_are_not() -> None:
    routes = _routes(_state())
    # HIGH priority and the degraded fallback must put a user on the same variant.
    for name in ["model:m", "model:m:high", "degraded:m"]:
        action: RouteAction = routes[name].route
        assert action.weighted_clusters.use_hash_policy.value, name
        assert [p.header.header_name for p in action.hash_policy] == ["x-user-id"], name
    for name in ["model:plain", "model:plain:high"]:
        action = routes[name].route
        assert not action.weighted_clusters.HasField("use_hash_policy"), name
        assert not action.hash_policy, name


def test_not_sticky_by_default() -> None:
    assert ModelSpec(splits=AB).sticky_header is None
    action = _routes(_state(sticky=None))["model:m"].route
    assert action.weighted_clusters.WhichOneof("random_value_specifier") is None
    assert not action.hash_policy


def test_parked_split_stays_out_of_a_sticky_route() -> None:
    splits = [*AB, Split(backend="plain", weight=0)]
    clusters = _routes(_state(splits=splits))["model:m"].route.weighted_clusters.clusters
    assert [c.name for c in clusters] == ["a", "b"]


@pytest.mark.parametrize(
    "after",
    [
        _state(splits=[Split(backend="a", weight=50), Split(backend="b", weight=50)]),
        _state(sticky="x-session-id"),
        _state(sticky=None),
    ],
    ids=["reweight", "other-header", "unsticky"],
)
def test_experiment_changes_are_route_only_pushes(after: DesiredState) -> None:
    before = _state()
    first = Snapshot.build(translate(before, OPTIONS))
    second = Snapshot.build(retranslate(after, OPTIONS, before, first.resources), first)
    for type_url in (CLUSTER, ENDPOINT, LISTENER):
        assert second.types[type_url] is first.types[type_url]
        assert second.versions[type_url] == first.versions[type_url]
    assert second.versions[ROUTE] != first.versions[ROUTE]
    assert second.resources == translate(after, OPTIONS)


def test_models_show_says_what_the_split_is_sticky_by() -> None:
    model = ModelPublic(name="m", splits=AB, sticky_header="x-user-id").model_dump(mode="json")
    text = model_detail(model)
    assert "sticky by: x-user-id (one variant per value; random without it)\n" in text
    assert "sticky by" not in model_detail({**model, "sticky_header": None})
