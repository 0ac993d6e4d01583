"""A structural diff between two desired states, for `revisions diff` and the UI."""

from __future__ import annotations

from typing import Any

from control_plane.domain import DesiredState


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    # Containers are not leaves, empty or not: an empty dict growing its first entry is
    # one addition, not a removal plus an addition.
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}.{i}", out)
    else:
        out[prefix] = value


def diff_states(old: DesiredState, new: DesiredState) -> list[dict[str, Any]]:
    """One entry per changed leaf path: {"path", "op": added|removed|changed, "old", "new"}."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(old.model_dump(mode="json"), "", before)
    _flatten(new.model_dump(mode="json"), "", after)
    changes: list[dict[str, Any]] = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            changes.append({"path": path, "op": "removed", "old": before[path], "new": None})
        elif path not in before:
            changes.append({"path": path, "op": "added", "old": None, "new": after[path]})
        elif before[path] != after[path]:
            changes.append({"path": path, "op": "changed", "old": before[path], "new": after[path]})
    return changes
