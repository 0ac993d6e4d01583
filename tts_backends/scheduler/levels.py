"""Priority levels, as the gateway filter sends them in `x-tts-priority`."""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("high", "default", "low")
RANK: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}


def parse_level(value: str | None) -> str:
    """A header value to a level; absent or unknown means `default`, never an error.

    Only the filter sets the header (it strips a client's copy), so an odd value is a
    version skew between filter and worker, not something to refuse a request over.
    """
    level = (value or "").strip().lower()
    return level if level in RANK else "default"
