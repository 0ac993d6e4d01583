"""An in-process ``CacheStore`` with the Redis store's semantics: the test fake.

It stores the encoded bytes, like Redis does, so a value that does not survive
``encode``/``decode`` fails here too. Set ``down = True`` to play a dead Redis: ``get``,
``put``, ``stats`` and ``purge`` then raise ``CacheUnavailable`` and ``record`` drops.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ttsgw_common.cache.stats import FIELD_OF, FIELDS, summarise
from ttsgw_contract.cache import CachedResponse, CacheUnavailable, Outcome
from ttsgw_contract.cache_keys import KEY_PREFIX


class MemoryCacheStore:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}  # key -> (encoded, expires at)
        self._counts: dict[str, dict[str, int]] = {}
        self.down = False
        self.closed = False

    def _check(self, op: str) -> None:
        if self.down:
            raise CacheUnavailable(f"memory store is down ({op})")

    async def get(self, key: str) -> CachedResponse | None:
        self._check("get")
        entry = self._entries.get(key)
        if entry is None:
            return None
        data, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return CachedResponse.decode(data)

    async def put(self, key: str, value: CachedResponse, ttl_s: int) -> None:
        self._check("put")
        if ttl_s <= 0:
            return
        self._entries[key] = (value.encode(), self._clock() + ttl_s)

    async def record(self, model: str, outcome: Outcome, nbytes: int = 0) -> None:
        if self.down:
            return
        counts = self._counts.setdefault(model, dict.fromkeys(FIELDS, 0))
        counts[FIELD_OF[outcome]] += 1
        if outcome == "hit" and nbytes > 0:
            counts["bytes_served"] += nbytes

    async def stats(self) -> dict[str, dict[str, float]]:
        self._check("stats")
        return {model: summarise(counts) for model, counts in sorted(self._counts.items())}

    async def purge(self, model: str | None = None) -> int:
        self._check("purge")
        now = self._clock()
        prefix = f"{KEY_PREFIX}:" if model is None else f"{KEY_PREFIX}:{model}:"
        doomed = [k for k in self._entries if k.startswith(prefix)]
        # Expired entries are already gone in Redis, so they do not count as removed.
        removed = sum(1 for k in doomed if self._entries[k][1] > now)
        for k in doomed:
            del self._entries[k]
        return removed

    async def aclose(self) -> None:
        self.closed = True

    def entry_count(self) -> int:
        """Live (unexpired) entries. Not ``__len__``: an empty store must stay truthy."""
        now = self._clock()
        return sum(1 for _, expires_at in self._entries.values() if expires_at > now)
