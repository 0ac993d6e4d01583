"""The route table: /v1/models, one route per model, a degraded fallback, and a JSON 404.

Split weights and sticky A/B hashing live only here, so a canary step or an experiment's
weight change is a RouteConfiguration update and nothing else.
"""

from __future__ import annotations

import json

from envoy.config.core.v3.base_pb2 import DataSource, RoutingPriority
from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    HeaderMatcher,
    RetryPolicy,
    Route,
    RouteAction,
    RouteMatch,
    VirtualHost,
    WeightedCluster,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from google.protobuf.wrappers_pb2 import UInt32Value

from control_plane import domain
from control_plane.errors import InvalidStateError
from control_plane.translator.options import VIRTUAL_HOST, TranslatorOptions
from control_plane.translator.protos import duration, header
from ttsgw_contract.headers import (
    BACKEND_HEADER,
    DEGRADED_HEADER,
    FILTERED_HEADER,
    MODEL_HEADER,
    PRIORITY_HEADER,
)

# Envoy caps direct_response bodies at 4 KiB by default; /v1/models grows with the models.
MAX_DIRECT_RESPONSE_BYTES = 1024 * 1024
MODELS_PATH = "/v1/models"
AUDIO_PREFIX = "/v1/audio/"
NOT_FOUND_BODY = json.dumps(
    {
        "error": {
            "message": "no route for this path; see /v1/models",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    },
    separators=(",", ":"),
)


def route_configuration(
    state: domain.DesiredState, options: TranslatorOptions
) -> RouteConfiguration:
    routes = [models_route(state)]
    # HIGH routes only exist while some class is high: they double the route count.
    high = any(c.level == "high" for c in state.priority_classes.values())
    for name in sorted(state.models):
        if high:
            routes.append(high_priority_route(name, state.models[name], options.route_secret))
        routes.append(model_route(name, state.models[name]))
    degraded = degraded_route(state)
    if degraded is not None:
        routes.append(degraded)
    routes += [filter_timeout_route(), not_found_route()]
    return RouteConfiguration(
        name=options.route_config_name,
        virtual_hosts=[VirtualHost(name=VIRTUAL_HOST, domains=["*"], routes=routes)],
        max_direct_response_body_size_bytes=UInt32Value(value=MAX_DIRECT_RESPONSE_BYTES),
    )


def models_body(state: domain.DesiredState) -> str:
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "ttsgw"}
        for name in sorted(state.models)
    ]
    return json.dumps({"object": "list", "data": data}, separators=(",", ":"))


def models_route(state: domain.DesiredState) -> Route:
    return Route(
        name="models",
        match=RouteMatch(
            path=MODELS_PATH,
            headers=[HeaderMatcher(name=":method", string_match=StringMatcher(exact="GET"))],
        ),
        direct_response=_json_response(200, models_body(state)),
        response_headers_to_add=[header("content-type", "application/json")],
    )


def model_route(name: str, model: domain.ModelSpec) -> Route:
    return Route(
        name=f"model:{name}",
        match=RouteMatch(
            prefix="/v1/",
            headers=[HeaderMatcher(name=MODEL_HEADER, string_match=StringMatcher(exact=name))],
        ),
        route=_route_action(model),
        # The mark is the filter's secret; backends have no use for it.
        request_headers_to_remove=[FILTERED_HEADER],
    )


def high_priority_route(name: str, model: domain.ModelSpec, route_secret: str) -> Route:
    """The model's route at Envoy's HIGH priority, with its own circuit-breaker budget.

    It also requires the filter's mark, whose value is a secret only the filter knows:
    while the filter is down a client's own x-tts-priority cannot reach this route.
    """
    marker = HeaderMatcher(name=FILTERED_HEADER, present_match=True)
    if route_secret:
        marker = HeaderMatcher(name=FILTERED_HEADER, string_match=StringMatcher(exact=route_secret))
    action = _route_action(model)
    action.priority = RoutingPriority.HIGH
    return Route(
        name=f"model:{name}:high",
        match=RouteMatch(
            prefix="/v1/",
            headers=[
                HeaderMatcher(name=MODEL_HEADER, string_match=StringMatcher(exact=name)),
                HeaderMatcher(name=PRIORITY_HEADER, string_match=StringMatcher(exact="high")),
                marker,
            ],
        ),
        route=action,
        request_headers_to_remove=[FILTERED_HEADER],
    )


def degraded_route(state: domain.DesiredState) -> Route | None:
    """Serve audio when the filter is down and never set the model header."""
    name = state.fallback_model()
    if name is None:
        return None
    if name not in state.models:
        raise InvalidStateError(f"default_model '{name}' is not a model", field="default_model")
    return Route(
        name=f"degraded:{name}",
        match=RouteMatch(
            prefix=AUDIO_PREFIX,
            headers=[
                HeaderMatcher(name=MODEL_HEADER, present_match=True, invert_match=True),
                HeaderMatcher(name=FILTERED_HEADER, present_match=True, invert_match=True),
            ],
        ),
        route=_route_action(state.models[name]),
        # Lets the access log's model field and the backend see which model served it.
        request_headers_to_add=[header(MODEL_HEADER, name)],
        response_headers_to_add=[header(DEGRADED_HEADER, "filter-unavailable")],
    )


FILTER_TIMEOUT_BODY = json.dumps(
    {
        "error": {
            "message": "the gateway filter did not answer in time; retry the request",
            "type": "server_error",
            "param": None,
            "code": "filter_timeout",
        }
    },
    separators=(",", ":"),
)


def filter_timeout_route() -> Route:
    """A speech request the filter saw but never routed: its answer came too late.

    The filter marks every speech request in the headers phase; if its body-phase answer
    misses Envoy's message timer, Envoy carries on without a model header. Saying so
    beats a 404 for a path that exists, and beats the degraded route, whose response
    headers would then also land on the filter's own rejections.
    """
    return Route(
        name="filter_timeout",
        match=RouteMatch(
            prefix=AUDIO_PREFIX,
            headers=[
                HeaderMatcher(name=MODEL_HEADER, present_match=True, invert_match=True),
                HeaderMatcher(name=FILTERED_HEADER, present_match=True),
            ],
        ),
        direct_response=_json_response(503, FILTER_TIMEOUT_BODY),
        # Only content-type: the filter's own rejections match this route too (they are
        # sent before a model is set), and Envoy adds these headers to them as well.
        response_headers_to_add=[header("content-type", "application/json")],
    )


def not_found_route() -> Route:
    return Route(
        name="not_found",
        match=RouteMatch(prefix="/"),
        direct_response=_json_response(404, NOT_FOUND_BODY),
        response_headers_to_add=[header("content-type", "application/json")],
    )


def _route_action(model: domain.ModelSpec) -> RouteAction:
    policy = model.retry_policy
    action = RouteAction(
        weighted_clusters=_weighted_clusters(model),
        timeout=duration(model.timeout_s),
        retry_policy=RetryPolicy(
            retry_on=policy.retry_on,
            num_retries=UInt32Value(value=policy.num_retries),
            per_try_timeout=duration(policy.per_try_timeout_s),
        ),
    )
    if model.sticky_header is not None:
        # With use_hash_policy, Envoy (>= 1.36) picks the weighted cluster by
        # hash % total_weight instead of the stream's random number. The hash is xxHash64
        # of the header value, the same on every proxy; a request without the header
        # yields no hash and falls back to random. The clusters are ROUND_ROBIN, so the
        # hash steers only the variant, not the endpoint within it.
        action.hash_policy.append(
            RouteAction.HashPolicy(
                header=RouteAction.HashPolicy.Header(header_name=model.sticky_header)
            )
        )
    return action


def _weighted_clusters(model: domain.ModelSpec) -> WeightedCluster:
    clusters = WeightedCluster(
        clusters=[
            WeightedCluster.ClusterWeight(
                name=split.backend,
                weight=UInt32Value(value=split.weight),
                # Per cluster, so the header names the backend Envoy actually picked.
                response_headers_to_add=[header(BACKEND_HEADER, split.backend)],
            )
            # Envoy rejects a zero total; a weight-0 split is a parked backend anyway.
            for split in model.splits
            if split.weight > 0
        ]
    )
    if model.sticky_header is not None:
        clusters.use_hash_policy.value = True
    return clusters


def _json_response(status: int, body: str) -> DirectResponseAction:
    return DirectResponseAction(status=status, body=DataSource(inline_string=body))
