"""Whole-state checks that pydantic cannot express field by field: references between resources."""

from __future__ import annotations

from control_plane.domain import DesiredState
from control_plane.errors import ConflictError


def check_references(state: DesiredState) -> None:
    """Raise ConflictError (409) naming the first reference that would dangle."""
    for model_name in sorted(state.models):
        for i, split in enumerate(state.models[model_name].splits):
            if split.backend not in state.backends:
                raise ConflictError(
                    f"model '{model_name}' splits traffic to backend '{split.backend}', "
                    "which does not exist; create the backend first",
                    field=f"models.{model_name}.splits.{i}.backend",
                )
    if state.default_model is not None and state.default_model not in state.models:
        raise ConflictError(
            f"default_model '{state.default_model}' does not exist",
            field="default_model",
        )


def models_using(state: DesiredState, backend: str) -> list[str]:
    return sorted(
        name
        for name, model in state.models.items()
        if any(s.backend == backend for s in model.splits)
    )
