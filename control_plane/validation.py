"""The whole-state checks of a write: pydantic's rules, then references between resources."""

from __future__ import annotations

from pydantic import ValidationError

from control_plane.domain import DesiredState
from control_plane.errors import ConflictError, InvalidStateError


def invalid_state(exc: ValidationError) -> InvalidStateError:
    """The 422 for a pydantic error, naming the first field that broke a rule."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return InvalidStateError(f"{field}: {first['msg']}", field=field or None)


def validated(state: DesiredState) -> DesiredState:
    """`state` re-validated as a whole by pydantic; InvalidStateError (422) otherwise.

    Mutations build states with ``model_copy``, which runs no validator, so cross-field
    rules (one class per API key, the speed range) are only checked here. References are
    checked apart (`check_references`), after the write's guards, so a rollout's own 409
    wins over a dangling reference its model would cause.
    """
    try:
        return DesiredState.model_validate(state.model_dump())
    except ValidationError as exc:
        raise invalid_state(exc) from exc


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
