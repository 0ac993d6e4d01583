"""The route table: order, header matching, weighted splits, retries, direct responses."""

from __future__ import annotations

import json

import pytest
from envoy.config.core.v3.base_pb2 import RoutingPriority
from envoy.config.route.v3.route_components_pb2 import Route
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelSpec,
    PriorityClassSpec,
    RetryPolicy,
    Split,
    default_state,
)
from control_plane.errors import InvalidStateError
from control_plane.translator import TranslatorOptions, translate
from control_plane.translator.routes import MAX_DIRECT_RESPONSE_BYTES


def _routes(state: DesiredState, options: TranslatorOptions | None = None) -> RouteConfiguration:
    (rc,) = translate(state, options or TranslatorOptions()).routes
    return rc


def _by_name(rc: RouteConfiguration) -> dict[str, Route]:
    return {r.name: r for r in rc.virtual_hosts[0].routes}


def _headers(options: object) -> dict[str, str]:
    return {h.header.key: h.header.value for h in options}  # type: ignore[attr-defined]


def _state(models: dict[str, ModelSpec], backends: list[str], **kw: object) -> DesiredState:
    return DesiredState(
        backends={
            b: BackendSpec(endpoints=[Endpoint(host="127.0.0.1", port=8000 + i)])
            for i, b in enumerate(backends)
        },
        models=models,
        **kw,  # type: ignore[arg-type]
    )


def test_route_config_name_virtual_host_and_order() -> None:
    rc = _routes(default_state(), TranslatorOptions(route_config_name="rc1"))
    assert rc.name == "rc1"
    (vhost,) = rc.virtual_hosts
    assert vhost.name == "ttsgw"
    assert list(vhost.domains) == ["*"]
    assert [r.name for r in vhost.routes] == [
        "models",
        "model:cosyvoice3",
        "model:espeak",
        "degraded:espeak",
        "filter_timeout",
        "not_found",
    ]


def test_models_route_is_a_get_only_json_direct_response() -> None:
    route = _by_name(_routes(default_state()))["models"]
    assert route.match.path == "/v1/models"
    (method,) = route.match.headers
    assert (method.name, method.string_match.exact) == (":method", "GET")
    assert route.direct_response.status == 200
    assert _headers(route.response_headers_to_add) == {"content-type": "application/json"}
    body = json.loads(route.direct_response.body.inline_string)
    assert body == {
        "object": "list",
        "data": [
            {"id": "cosyvoice3", "object": "model", "created": 0, "owned_by": "ttsgw"},
            {"id": "espeak", "object": "model", "created": 0, "owned_by": "ttsgw"},
        ],
    }


def test_models_body_over_4k_fits_the_configured_cap() -> None:
    names = [f"model-{i:03d}" for i in range(300)]
    state = _state({n: ModelSpec(splits=[Split(backend="b", weight=1)]) for n in names}, ["b"])
    rc = _routes(state)
    body = _by_name(rc)["models"].direct_response.body.inline_string
    assert len(body.encode()) > 4096  # Envoy's default cap would reject this config
    assert rc.max_direct_response_body_size_bytes.value >= len(body.encode())
    assert rc.max_direct_response_body_size_bytes.value == MAX_DIRECT_RESPONSE_BYTES
    assert [m["id"] for m in json.loads(body)["data"]] == names


def test_model_route_matches_header_and_splits_by_weight() -> None:
    model = ModelSpec(
        splits=[
            Split(backend="stable", weight=90),
            Split(backend="canary", weight=10),
            Split(backend="parked", weight=0),
        ]
    )
    route = _by_name(_routes(_state({"tts-1": model}, ["stable", "canary", "parked"])))[
        "model:tts-1"
    ]
    assert route.match.prefix == "/v1/"
    (hm,) = route.match.headers
    assert (hm.name, hm.string_match.exact) == ("x-tts-model", "tts-1")
    clusters = route.route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in clusters] == [("stable", 90), ("canary", 10)]
    for c in clusters:
        assert _headers(c.response_headers_to_add) == {"x-tts-backend": c.name}


def test_model_route_timeout_and_retry_defaults_from_the_article() -> None:
    route = _by_name(_routes(default_state()))["model:espeak"]
    assert route.route.timeout.seconds == 60
    retry = route.route.retry_policy
    assert retry.retry_on == "gateway-error,connect-failure,refused-stream"
    assert retry.num_retries.value == 3
    assert retry.per_try_timeout.seconds == 30


def test_model_route_timeout_and_retry_overrides() -> None:
    model = ModelSpec(
        splits=[Split(backend="b", weight=1)],
        timeout_s=2.5,
        retry_policy=RetryPolicy(retry_on="5xx", num_retries=0, per_try_timeout_s=1.0),
    )
    route = _by_name(_routes(_state({"m": model}, ["b"])))["model:m"]
    assert route.route.timeout.ToMilliseconds() == 2500
    assert route.route.retry_policy.retry_on == "5xx"
    assert route.route.retry_policy.num_retries.value == 0
    assert route.route.retry_policy.per_try_timeout.ToMilliseconds() == 1000


def test_degraded_route_matches_missing_header_and_uses_fallback_model() -> None:
    models = {
        "a": ModelSpec(splits=[Split(backend="ba", weight=1)]),
        "b": ModelSpec(splits=[Split(backend="bb", weight=3), Split(backend="ba", weight=1)]),
    }
    rc = _routes(_state(models, ["ba", "bb"], default_model="b"))
    route = _by_name(rc)["degraded:b"]
    assert route.match.prefix == "/v1/audio/"
    # Only requests the filter never saw: no model header and no filter marker.
    assert {hm.name for hm in route.match.headers} == {"x-tts-model", "x-tts-filtered"}
    assert all(hm.present_match and hm.invert_match for hm in route.match.headers)
    assert [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters] == [
        ("bb", 3),
        ("ba", 1),
    ]
    assert _headers(route.response_headers_to_add) == {"x-tts-degraded": "filter-unavailable"}
    assert _headers(route.request_headers_to_add) == {"x-tts-model": "b"}
    assert route.route == _by_name(rc)["model:b"].route


def test_degraded_route_defaults_to_first_model_by_name() -> None:
    state = default_state().model_copy(update={"default_model": None})
    assert "degraded:cosyvoice3" in _by_name(_routes(state))
    assert "degraded:espeak" in _by_name(_routes(default_state()))


def test_degraded_route_rejects_unknown_default_model() -> None:
    state = _state({"a": ModelSpec(splits=[Split(backend="b", weight=1)])}, ["b"])
    state = state.model_copy(update={"default_model": "ghost"})
    with pytest.raises(InvalidStateError) as err:
        translate(state, TranslatorOptions())
    assert err.value.field == "default_model"


def test_no_models_means_no_model_routes() -> None:
    rc = _routes(DesiredState())
    assert [r.name for r in rc.virtual_hosts[0].routes] == ["models", "filter_timeout", "not_found"]
    body = json.loads(_by_name(rc)["models"].direct_response.body.inline_string)
    assert body == {"object": "list", "data": []}


def test_catch_all_is_an_openai_shaped_json_404() -> None:
    route = _by_name(_routes(default_state()))["not_found"]
    assert route.match.prefix == "/"
    assert route.direct_response.status == 404
    assert _headers(route.response_headers_to_add) == {"content-type": "application/json"}
    body = json.loads(route.direct_response.body.inline_string)
    assert body == {
        "error": {
            "message": "no route for this path; see /v1/models",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }


def test_a_marked_request_without_a_model_gets_a_json_503_not_a_404() -> None:
    route = _by_name(_routes(default_state()))["filter_timeout"]
    assert route.match.prefix == "/v1/audio/"
    matchers = {hm.name: hm for hm in route.match.headers}
    assert matchers["x-tts-model"].invert_match and not matchers["x-tts-filtered"].invert_match
    assert route.direct_response.status == 503
    body = json.loads(route.direct_response.body.inline_string)
    assert body["error"]["code"] == "filter_timeout"
    assert _headers(route.response_headers_to_add) == {"content-type": "application/json"}


def test_high_priority_routes_need_the_filters_secret_mark() -> None:
    plain = _by_name(_routes(default_state()))
    assert "model:espeak:high" not in plain  # no high class, no doubled routes
    state = default_state().model_copy(
        update={"priority_classes": {"gold": PriorityClassSpec(level="high")}}
    )
    rc = translate(state, TranslatorOptions(route_secret="s3cret")).routes[0]
    route = _by_name(rc)["model:espeak:high"]
    assert route.route.priority == RoutingPriority.HIGH
    assert _by_name(rc)["model:espeak"].route.priority == RoutingPriority.DEFAULT
    matchers = {hm.name: hm.string_match.exact for hm in route.match.headers}
    assert matchers == {
        "x-tts-model": "espeak",
        "x-tts-priority": "high",
        "x-tts-filtered": "s3cret",
    }
    assert list(route.request_headers_to_remove) == ["x-tts-filtered"]
