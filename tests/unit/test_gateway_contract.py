"""The gateway filter's contract: what it carries and when its version moves."""

from __future__ import annotations

from control_plane.domain import GatewayPolicy, ModelSpec, PriorityClassSpec, Split, default_state
from control_plane.gateway_contract import gateway_config
from ttsgw_contract.gateway_config import SCHEMA_VERSION, FilterTimeouts, GatewayConfig


def _with_model(**changes: object) -> GatewayConfig:
    state = default_state()
    model = state.models["espeak"].model_copy(update=changes)
    return gateway_config(state.model_copy(update={"models": {**state.models, "espeak": model}}), 2)


def test_carries_models_limits_and_cache_policy() -> None:
    config = gateway_config(default_state(), 1)
    assert config.schema_version == SCHEMA_VERSION
    assert config.revision == 1
    assert config.models["espeak"].backends == ("espeak",)
    assert config.models["espeak"].cache_ttl_s == 3600
    assert config.limits.model_dump() == {
        "max_input_chars": 4096,
        "max_prompt_audio_bytes": 10 * 1024 * 1024,
        "max_prompt_audio_seconds": 30.0,
        "min_speed": 0.25,
        "max_speed": 4.0,
    }
    assert config.cache.model_dump() == {"enabled": True, "max_entry_bytes": 8 * 1024 * 1024}


def test_the_filter_parses_what_the_control_plane_serves() -> None:
    config = gateway_config(default_state(), 7, "s3cret", FilterTimeouts(message_timeout_ms=250))
    wire = config.model_dump_json()
    assert GatewayConfig.model_validate_json(wire) == config
    assert config.timeouts.message_timeout_ms == 250
    assert config.auth.route_secret == "s3cret"


def test_the_version_is_deterministic_and_ignores_the_revision() -> None:
    first = gateway_config(default_state(), 1)
    again = gateway_config(default_state(), 9)
    assert first.version == again.version and len(first.version) == 16
    assert first.revision != again.revision


def test_timeouts_move_the_version() -> None:
    base = gateway_config(default_state(), 1)
    slower = gateway_config(default_state(), 1, timeouts=FilterTimeouts(message_timeout_ms=900))
    assert slower.version != base.version


def test_split_change_bumps_the_cache_generation_and_version() -> None:
    base = gateway_config(default_state(), 1)
    split = _with_model(
        splits=[Split(backend="espeak", weight=90), Split(backend="cosyvoice3", weight=10)]
    )
    assert split.models["espeak"].cache_generation != base.models["espeak"].cache_generation
    assert split.models["espeak"].backends == ("espeak", "cosyvoice3")
    assert split.version != base.version


def test_changes_the_filter_does_not_use_keep_the_version() -> None:
    base = gateway_config(default_state(), 1)
    slower = _with_model(timeout_s=120.0)
    assert slower.version == base.version
    assert slower.models == base.models


def test_zero_weight_backends_are_not_listed() -> None:
    config = _with_model(
        splits=[Split(backend="espeak", weight=100), Split(backend="cosyvoice3", weight=0)]
    )
    assert config.models["espeak"].backends == ("espeak",)


def test_policy_changes_reach_the_filter() -> None:
    state = default_state().model_copy(update={"gateway": GatewayPolicy(max_input_chars=100)})
    config = gateway_config(state, 3)
    assert config.limits.max_input_chars == 100
    assert ModelSpec.model_fields["cache_ttl_s"].default == 3600


def test_auth_carries_key_hashes_classes_and_the_switch() -> None:
    state = default_state().model_copy(
        update={
            "gateway": GatewayPolicy(require_api_keys=True),
            "priority_classes": {
                "gold": PriorityClassSpec(level="high", api_key_hashes=["a" * 64]),
                "bulk": PriorityClassSpec(level="low", rate_limit_rps=5.0),
            },
        }
    )
    auth = gateway_config(state, 4).model_dump(mode="json")["auth"]
    assert auth["require_api_keys"] is True
    assert auth["keys"] == {"a" * 64: "gold"}
    assert auth["classes"] == {
        "bulk": {"level": "low", "rate_limit_rps": 5.0},
        "gold": {"level": "high", "rate_limit_rps": None},
    }
