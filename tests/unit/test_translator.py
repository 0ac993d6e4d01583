"""The translator as a whole: deterministic bytes, and weight changes that touch only routes."""

from __future__ import annotations

from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelSpec,
    Split,
    default_state,
)
from control_plane.translator import TranslatorOptions, translate
from control_plane.xds.resources import Resources
from ttsgw_contract.gateway_config import DEFAULT_MESSAGE_TIMEOUT_MS


def _bytes(messages: tuple[object, ...]) -> list[bytes]:
    return [m.SerializeToString(deterministic=True) for m in messages]  # type: ignore[attr-defined]


def _canary(stable: int, canary: int) -> DesiredState:
    return DesiredState(
        backends={
            "stable": BackendSpec(endpoints=[Endpoint(host="127.0.0.1", port=8101)]),
            "canary": BackendSpec(endpoints=[Endpoint(host="tts-canary", port=8101)]),
        },
        models={
            "tts": ModelSpec(
                splits=[
                    Split(backend="stable", weight=stable),
                    Split(backend="canary", weight=canary),
                ]
            )
        },
    )


def test_default_options_match_the_contract() -> None:
    o = TranslatorOptions()
    assert (o.listener_address, o.listener_port) == ("0.0.0.0", 10000)
    assert (o.ext_proc_host, o.ext_proc_port) == ("127.0.0.1", 18001)
    assert o.ext_proc_message_timeout_ms == DEFAULT_MESSAGE_TIMEOUT_MS
    assert o.ext_proc_failure_mode_allow is True
    assert o.access_log_path == "/dev/stdout"
    assert (o.route_config_name, o.listener_name) == ("ttsgw_routes", "ttsgw_listener")


def test_translate_returns_resources() -> None:
    resources = translate(default_state(), TranslatorOptions())
    assert isinstance(resources, Resources)
    assert len(resources.listeners) == 1
    assert len(resources.routes) == 1


def test_output_is_deterministic_regardless_of_insertion_order() -> None:
    state = default_state()
    reordered = DesiredState(
        backends=dict(reversed(list(state.backends.items()))),
        models=dict(reversed(list(state.models.items()))),
        default_model=state.default_model,
    )
    a, b = translate(state, TranslatorOptions()), translate(reordered, TranslatorOptions())
    for kind in ("clusters", "endpoints", "listeners", "routes"):
        assert _bytes(getattr(a, kind)) == _bytes(getattr(b, kind)), kind
    names = [c.name for c in a.clusters]
    assert names == sorted(names)


def test_weight_change_touches_only_the_route_configuration() -> None:
    before = translate(_canary(90, 10), TranslatorOptions())
    after = translate(_canary(50, 50), TranslatorOptions())
    assert _bytes(before.clusters) == _bytes(after.clusters)
    assert _bytes(before.endpoints) == _bytes(after.endpoints)
    assert _bytes(before.listeners) == _bytes(after.listeners)
    assert _bytes(before.routes) != _bytes(after.routes)


def test_zero_weight_keeps_the_cluster_warm() -> None:
    # Parking a canary at 0 must not remove its cluster, or the next step re-warms it.
    before = translate(_canary(100, 0), TranslatorOptions())
    after = translate(_canary(90, 10), TranslatorOptions())
    assert [c.name for c in before.clusters] == [c.name for c in after.clusters]
    assert _bytes(before.clusters) == _bytes(after.clusters)
