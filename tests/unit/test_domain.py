"""Domain model: the article's defaults, weight rules, and reference checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control_plane.diff import diff_states
from control_plane.domain import BackendSpec, DesiredState, ModelSpec, Split, default_state
from control_plane.errors import ConflictError
from control_plane.validation import check_references, models_using


def test_defaults_follow_the_source_article() -> None:
    backend = BackendSpec.model_validate({"endpoints": [{"host": "10.0.0.1", "port": 7860}]})
    assert backend.connect_timeout_s == 10
    assert backend.circuit_breakers.default.max_pending_requests == 10
    assert backend.circuit_breakers.default.max_requests == 20
    hc = backend.health_check
    assert (hc.path, hc.interval_s, hc.timeout_s) == ("/health", 10, 5)
    assert (hc.unhealthy_threshold, hc.healthy_threshold) == (2, 2)
    assert backend.outlier_detection.enabled
    model = ModelSpec(splits=[Split(backend="a", weight=1)])
    assert model.timeout_s == 60
    assert model.retry_policy.retry_on == "gateway-error,connect-failure,refused-stream"
    assert (model.retry_policy.num_retries, model.retry_policy.per_try_timeout_s) == (3, 30)


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ([{"backend": "a", "weight": -1}], "greater than or equal to 0"),
        ([{"backend": "a", "weight": 0}, {"backend": "b", "weight": 0}], "at least one weight"),
        ([{"backend": "a", "weight": 1}, {"backend": "a", "weight": 2}], "only once"),
        ([], "at least 1 item"),
    ],
)
def test_invalid_weights_are_rejected(splits: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec.model_validate({"splits": splits})


def test_names_and_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        DesiredState.model_validate(
            {"backends": {"Bad_Name": {"endpoints": [{"host": "h", "port": 1}]}}}
        )
    with pytest.raises(ValidationError, match="Extra inputs"):
        ModelSpec.model_validate({"splits": [{"backend": "a", "weight": 1}], "wieght": 3})


def test_dangling_split_is_a_conflict_naming_the_field() -> None:
    state = DesiredState(models={"m": ModelSpec(splits=[Split(backend="ghost", weight=1)])})
    with pytest.raises(ConflictError) as err:
        check_references(state)
    assert err.value.field == "models.m.splits.0.backend"
    assert "ghost" in err.value.message


def test_default_state_is_consistent() -> None:
    state = default_state()
    check_references(state)
    assert models_using(state, "espeak") == ["espeak"]
    assert state.fallback_model() == "espeak"
    assert all(b.health_check.path == "/ready" for b in state.backends.values())


def test_diff_names_changed_leaves() -> None:
    old = default_state()
    new = old.model_copy(
        update={
            "models": {
                **old.models,
                "espeak": ModelSpec(splits=[Split(backend="espeak", weight=7)]),
            }
        }
    )
    changes = diff_states(old, new)
    assert changes == [
        {"path": "models.espeak.splits.0.weight", "op": "changed", "old": 100, "new": 7}
    ]


def test_unknown_retry_condition_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown retry condition"):
        ModelSpec.model_validate(
            {"splits": [{"backend": "a", "weight": 1}], "retry_policy": {"retry_on": "5xx,oops"}}
        )
    ok = ModelSpec.model_validate(
        {"splits": [{"backend": "a", "weight": 1}], "retry_policy": {"retry_on": "5xx,reset"}}
    )
    assert ok.retry_policy.retry_on == "5xx,reset"
