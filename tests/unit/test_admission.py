"""API keys to priority classes, the keys-required switch, and per-class rate limits."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import RateLimitedError, UnauthorizedError
from gateway.ext_proc.admission import Admission, bearer_key
from ttsgw_contract.gateway_config import AuthPolicy, PriorityClass


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


POLICY = AuthPolicy(
    keys={_hash("gold-key"): "gold", _hash("bulk-key"): "bulk"},
    classes={
        "gold": PriorityClass(level="high"),
        "bulk": PriorityClass(level="low", rate_limit_rps=2),
    },
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_known_key_gets_its_class_and_level() -> None:
    admitted = Admission().admit("Bearer gold-key", POLICY)
    assert (admitted.priority_class, admitted.level) == ("gold", "high")


def test_unknown_or_missing_keys_are_default_traffic_unless_keys_are_required() -> None:
    for header in (None, "Bearer nope", "Basic abc", "Bearer "):
        assert Admission().admit(header, POLICY).level == "default"
    strict = POLICY.model_copy(update={"require_api_keys": True})
    with pytest.raises(UnauthorizedError, match="not valid"):
        Admission().admit("Bearer nope", strict)
    with pytest.raises(UnauthorizedError, match="required") as err:
        Admission().admit(None, strict)
    assert err.value.status == 401 and err.value.code == "invalid_api_key"
    assert Admission().admit("Bearer gold-key", strict).level == "high"


def test_rate_limit_is_per_class_with_a_retry_after() -> None:
    clock = Clock()
    admission = Admission(clock)
    admission.admit("Bearer bulk-key", POLICY)
    admission.admit("Bearer bulk-key", POLICY)
    with pytest.raises(RateLimitedError) as err:
        admission.admit("Bearer bulk-key", POLICY)
    assert err.value.status == 429 and err.value.retry_after_s == 1
    # Other classes are not affected, and the bucket refills with time.
    assert admission.admit("Bearer gold-key", POLICY).level == "high"
    clock.now += 0.5
    assert admission.admit("Bearer bulk-key", POLICY).priority_class == "bulk"


def test_bearer_parsing() -> None:
    assert bearer_key("Bearer abc") == "abc"
    assert bearer_key("bearer  abc ") == "abc"
    assert bearer_key("Basic abc") is None
    assert bearer_key(None) is None
