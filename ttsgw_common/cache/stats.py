"""Per-model cache counters: which outcome bumps which field, and the summary admins see."""

from __future__ import annotations

from collections.abc import Mapping

from ttsgw_contract.cache import Outcome

FIELDS = ("hits", "misses", "bypasses", "bytes_served")

FIELD_OF: dict[Outcome, str] = {"hit": "hits", "miss": "misses", "bypass": "bypasses"}


def summarise(counts: Mapping[str, float]) -> dict[str, float]:
    """The counters plus ``hit_ratio`` = hits / (hits + misses).

    Bypasses are left out of the ratio: they never consulted the cache (split models,
    Redis down), so counting them would blame the cache for requests it never saw.
    """
    row = {field: float(counts.get(field, 0)) for field in FIELDS}
    lookups = row["hits"] + row["misses"]
    row["hit_ratio"] = row["hits"] / lookups if lookups else 0.0
    return row
