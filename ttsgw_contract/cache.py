"""What the filter needs from a response cache, apart from how it is stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["hit", "miss", "bypass"]


class CacheUnavailable(Exception):
    """The store did not answer in time or at all; the filter then serves with `bypass`."""


@dataclass(frozen=True)
class CachedResponse:
    """One complete 200 response as the backend sent it."""

    body: bytes
    content_type: str
    backend: str  # the x-tts-backend that made it

    def encode(self) -> bytes:
        header = json.dumps({"content_type": self.content_type, "backend": self.backend})
        return header.encode() + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> CachedResponse:
        header, _, body = data.partition(b"\n")
        meta = json.loads(header)
        return cls(body=body, content_type=str(meta["content_type"]), backend=str(meta["backend"]))


class CacheStore(Protocol):
    """A response cache shared by every filter instance.

    ``get`` and ``put`` raise CacheUnavailable when the store is down or slow; the filter
    treats that as a bypass. ``record`` is best effort and never raises.
    """

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, value: CachedResponse, ttl_s: int) -> None: ...

    async def record(self, model: str, outcome: Outcome, nbytes: int = 0) -> None: ...

    async def stats(self) -> dict[str, dict[str, float]]: ...

    async def purge(self, model: str | None = None) -> int: ...

    async def aclose(self) -> None: ...
