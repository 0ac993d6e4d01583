"""How a rollout reads and writes a model's splits: stable at 100 - w, canary at w.

The stable backend is the one split with traffic when the rollout starts; a model that
already splits between several backends must be set to one first, so a rollout never
guesses which of them the canary replaces. Other (weight-0, parked) splits are left
as they are.
"""

from __future__ import annotations

from control_plane.domain import DesiredState, ModelSpec, Split
from control_plane.errors import ConflictError, InvalidStateError, NotFoundError


def stable_backend(state: DesiredState, model: str, canary: str) -> str:
    """The backend a rollout of `canary` on `model` starts from; raises when there is none."""
    if model not in state.models:
        raise NotFoundError(f"model '{model}' does not exist", field="model")
    if canary not in state.backends:
        raise ConflictError(
            f"canary backend '{canary}' does not exist; create it first", field="canary"
        )
    live = [s.backend for s in state.models[model].splits if s.weight > 0]
    if len(live) != 1:
        raise ConflictError(
            f"model '{model}' splits its traffic between {', '.join(live)}; a rollout starts "
            f"from one stable backend: set it first (`ttsgw models set-split {model} "
            f"{live[0]}=100`)",
            field="model",
        )
    if live[0] == canary:
        raise InvalidStateError(
            f"backend '{canary}' already has all of model '{model}''s traffic; "
            "the canary must be a different backend",
            field="canary",
        )
    return live[0]


def weighted(model: ModelSpec, stable: str, canary: str, weight: int) -> ModelSpec:
    """The model with the canary at `weight` percent and the stable backend at the rest."""
    wanted = {stable: 100 - weight, canary: weight}
    splits = [
        Split(backend=s.backend, weight=wanted.pop(s.backend, s.weight)) for s in model.splits
    ]
    splits += [Split(backend=b, weight=w) for b, w in wanted.items()]
    return model.model_copy(update={"splits": splits})


def promoted(model: ModelSpec, stable: str, canary: str) -> ModelSpec:
    """The canary is the new stable backend; the old one leaves the splits (free to delete)."""
    rest = [s for s in model.splits if s.backend not in (stable, canary)]
    return model.model_copy(update={"splits": [Split(backend=canary, weight=100), *rest]})


def split_weights(model: ModelSpec) -> dict[str, int]:
    return {s.backend: s.weight for s in model.splits}


def with_model(state: DesiredState, name: str, model: ModelSpec) -> DesiredState:
    return state.model_copy(update={"models": {**state.models, name: model}})
