"""Who is asking: API key -> priority class, the keys-required switch, per-class rate limits."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import RateLimitedError, UnauthorizedError
from ttsgw_contract.gateway_config import AuthPolicy

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Admitted:
    priority_class: str
    level: str


class _Bucket:
    """A token bucket refilled at `rate` per second, holding at most one second's worth."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.updated = now

    def take(self, now: float) -> float:
        """0 when admitted, else the seconds until a token will be there."""
        capacity = max(self.rate, 1.0)
        self.tokens = min(capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def bearer_key(authorization: str | None) -> str | None:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


class Admission:
    """Resolves a request's class; rate limits are per class and per filter process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, authorization: str | None, auth: AuthPolicy) -> Admitted:
        key = bearer_key(authorization)
        name = auth.keys.get(hashlib.sha256(key.encode()).hexdigest()) if key else None
        if name is None or name not in auth.classes:
            if auth.require_api_keys:
                raise UnauthorizedError(
                    "A valid API key is required: send 'Authorization: Bearer <key>'. "
                    "Ask the gateway's operators for a key."
                    if key is None
                    else "The API key is not valid for this gateway."
                )
            # Keys not required: OpenAI clients always send some key; unknown ones are
            # simply default-priority traffic.
            return Admitted(ANONYMOUS, "default")
        cls = auth.classes[name]
        if cls.rate_limit_rps is not None:
            self._limit(name, cls.rate_limit_rps)
        return Admitted(name, cls.level)

    def _limit(self, name: str, rate: float) -> None:
        now = self._clock()
        bucket = self._buckets.get(name)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[name] = _Bucket(rate, now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimitedError(
                f"Priority class '{name}' is over its rate limit of {rate:g} requests/s; "
                "retry after the time in Retry-After.",
                retry_after_s=max(1, math.ceil(wait)),
            )
