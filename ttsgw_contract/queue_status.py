"""The queue view's bodies: what the control plane's GET /api/v1/queue returns, what the
filter relays as GET /v1/queue.

The control plane builds `QueueAggregate` (control_plane/queue_status.py); the filter
parses it (gateway/queue_client.py) and answers clients with `aggregate.public()`, which
keeps what a client can act on (per level: depth and estimated wait; in-flight; the busy
hint) and drops what is internal (backends, weights, endpoint addresses, errors).

As with the gateway-config, unknown fields are ignored and every field has a default, so
either side can grow the body before the other understands it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LEVELS = ("high", "default", "low")

Busy = Literal["idle", "busy", "overloaded", "unknown"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LevelQueue(_Body):
    """One priority level summed over a model's live endpoints."""

    depth: int = 0
    limit: int = 0
    fill: float | None = None
    timeout_s: float | None = None
    oldest_wait_s: float = 0.0
    # Requests queued at this level or above / the summed drain rate; None while unknown.
    estimated_wait_s: float | None = None

    def public(self) -> PublicLevelQueue:
        return PublicLevelQueue(depth=self.depth, estimated_wait_s=self.estimated_wait_s)


class EndpointQueue(_Body):
    """One worker address as the control plane last polled it."""

    address: str
    state: Literal["ok", "unreachable"] = "unreachable"
    error: str | None = None
    age_s: float | None = None
    # The worker's own /v1/queue answer, as it sent it (tts_backends owns that shape).
    queue: dict[str, Any] | None = None


class BackendQueue(_Body):
    name: str
    weight: int = 0
    endpoints: list[EndpointQueue] = Field(default_factory=list)


class EndpointCounts(_Body):
    total: int = 0
    reachable: int = 0


class ModelQueue(_Body):
    """One public model: sums over the backends its splits send traffic to."""

    busy: Busy = "unknown"
    queued: int = 0
    in_flight: int = 0
    drain_rate_per_s: float | None = None
    levels: dict[str, LevelQueue] = Field(default_factory=dict)
    endpoints: EndpointCounts = Field(default_factory=EndpointCounts)
    backends: list[BackendQueue] = Field(default_factory=list)

    def _level(self, level: str) -> LevelQueue:
        return self.levels.get(level) or LevelQueue()

    def public(self) -> PublicModelQueue:
        return PublicModelQueue(
            busy=self.busy,
            queued=self.queued,
            in_flight=self.in_flight,
            levels={level: self._level(level).public() for level in LEVELS},
        )


class QueueAggregate(_Body):
    """GET /api/v1/queue on the control plane (admin API, dataplane role)."""

    object: Literal["queue.aggregate"] = "queue.aggregate"
    revision: int | None = None
    poll_interval_s: float | None = None
    # Seconds since the poll these figures come from; None before the first.
    age_s: float | None = None
    models: dict[str, ModelQueue]

    def public(self, names: list[str] | None = None) -> PublicQueue:
        """The client's view of ``names`` (default: every model, sorted)."""
        chosen = sorted(self.models) if names is None else names
        return PublicQueue(
            age_s=self.age_s, models={name: self.models[name].public() for name in chosen}
        )


class PublicLevelQueue(_Body):
    depth: int = 0
    estimated_wait_s: float | None = None


class PublicModelQueue(_Body):
    busy: Busy = "unknown"
    queued: int = 0
    in_flight: int = 0
    levels: dict[str, PublicLevelQueue] = Field(default_factory=dict)


class PublicQueue(_Body):
    """GET /v1/queue on the gateway, answered by the filter."""

    object: Literal["queue"] = "queue"
    age_s: float | None = None
    models: dict[str, PublicModelQueue]
