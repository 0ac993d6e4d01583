"""What a rollout is: the spec ops start it with, its persisted state, and its event history.

A rollout moves a model's traffic from its one stable backend to a canary backend in
steps (percentages of the model's traffic), judging the canary's own Envoy numbers
against the gates once per interval. Times are Unix seconds, so a restart can pick
up a half-finished interval where it was.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_plane.domain import Name

Status = Literal["pending", "running", "paused", "promoted", "rolled_back", "aborted", "failed"]
# Active rollouts own their model's splits (see guard.py); terminal ones never change again.
ACTIVE: frozenset[str] = frozenset({"pending", "running", "paused"})
TERMINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "failed"})

Verdict = Literal["pass", "fail", "thin", "error"]
EventKind = Literal[
    "started",
    "check",
    "advanced",
    "promoted",
    "rolled_back",
    "paused",
    "resumed",
    "aborted",
    "failed",
    "recovered",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gates(_Strict):
    """What the canary must show on each interval's traffic to move on."""

    # Share of the canary's requests that were not 5xx.
    min_success_rate: Annotated[float, Field(ge=0, le=1)] = 0.99
    # Upstream p99 in ms; None: latency is not gated.
    max_p99_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    # Fewer canary requests than this in an interval is too thin to judge: hold.
    min_requests: Annotated[int, Field(ge=0, le=10_000_000)] = 20
    # Failed checks tolerated over the whole rollout; one more rolls it back.
    max_failed_checks: Annotated[int, Field(ge=0, le=1000)] = 1


class RolloutSpec(_Strict):
    """The body of POST /api/v1/rollouts."""

    model: Name
    canary: Name
    # Canary weights in percent of the model's traffic, strictly increasing.
    steps: Annotated[list[int], Field(min_length=1, max_length=100)] = [5, 25, 50, 100]
    interval_s: Annotated[float, Field(gt=0, le=24 * 3600)] = 30.0
    gates: Gates = Gates()

    @field_validator("steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= s <= 100 for s in steps):
            raise ValueError("each step is a canary weight from 1 to 100 (percent)")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must be strictly increasing, e.g. [5, 25, 50, 100]")
        return steps


class Rollout(_Strict):
    """One rollout's state, as stored and as the API shows it."""

    id: int
    model: str
    canary: str
    # The backend that had all of the model's traffic when the rollout started.
    stable: str
    spec: RolloutSpec
    status: Status
    step_index: int = 0
    weight: int = 0
    checks: int = 0
    failed_checks: int = 0
    author: str = "admin"
    message: str = ""
    created_at: float
    updated_at: float
    finished_at: float | None = None
    next_check_at: float | None = None
    last_verdict: Verdict | None = None
    last_figures: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def author_tag(self) -> str:
        """The author of this rollout's revisions; the guard lets only it touch the model."""
        return f"rollout:{self.id}"

    def public(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        body["steps"] = self.spec.steps
        body["interval_s"] = self.spec.interval_s
        body["gates"] = self.spec.gates.model_dump(mode="json")
        del body["spec"]
        return body


class RolloutEvent(_Strict):
    """One line of a rollout's history: a check with its figures, a step, a manual action."""

    id: int = 0
    rollout_id: int
    at: float
    kind: EventKind
    weight: int
    step_index: int
    verdict: Verdict | None = None
    figures: dict[str, Any] | None = None
    revision: int | None = None
    author: str | None = None
    message: str = ""

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
