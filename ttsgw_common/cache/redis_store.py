"""The shared response cache on Redis, failing open behind a circuit breaker.

A slow or dead Redis costs one request at most ``op_timeout_s`` (plus ``connect_timeout_s``
while connecting); after that failure Redis is skipped for ``cooldown_s``, so every other
request in the cool-down answers ``CacheUnavailable`` at once and goes to the backend.
When the cool-down ends one caller probes Redis while the rest keep skipping, so a still
dead Redis is not hit by a burst of requests each waiting out a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ttsgw_common.cache.stats import FIELD_OF, summarise
from ttsgw_contract.cache import CachedResponse, CacheUnavailable, Outcome
from ttsgw_contract.cache_keys import STATS_PREFIX, entry_pattern, model_of_stats_key, stats_key

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that say Redis is unreachable or wedged; these open the circuit. Any other
# RedisError (say OOM on a write) is the answer of a live server and only fails that call.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
_SCAN_COUNT = 1000


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        # registry=None keeps the counters unregistered, so tests can build many stores.
        self.errors = Counter(
            "ttsgw_cache_redis_errors",
            "Redis calls of the response cache that failed or timed out, by operation.",
            ["op"],
            registry=registry,
        )
        self.circuit_opens = Counter(
            "ttsgw_cache_circuit_open",
            "Times the response cache stopped calling Redis for a cool-down after a failure.",
            registry=registry,
        )


class RedisCacheStore:
    """``CacheStore`` on ``redis.asyncio``; every Redis failure becomes ``CacheUnavailable``."""

    def __init__(
        self,
        url: str,
        *,
        op_timeout_s: float = 0.05,
        connect_timeout_s: float = 0.2,
        cooldown_s: float = 1.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # No retries: a retry would multiply the latency a broken Redis adds to a request,
        # and the backend is always there to fall back on.
        self._redis = Redis.from_url(
            url,
            socket_timeout=op_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        # A hard cap per call besides the socket timeouts, which apply per read.
        self._budget_s = op_timeout_s + connect_timeout_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state: Literal["closed", "open", "probing"] = "closed"
        self._open_until = 0.0
        self._metrics = _Metrics(registry)

    @property
    def circuit_open(self) -> bool:
        """True while Redis is being skipped after a failure."""
        return self._state != "closed"

    async def get(self, key: str) -> CachedResponse | None:
        data = await self._call("get", lambda: self._redis.get(key))
        if data is None:
            return None
        try:
            return CachedResponse.decode(data if isinstance(data, bytes) else data.encode())
        except (ValueError, KeyError, TypeError):
            # A foreign or truncated value under our prefix: a miss, overwritten by the put.
            log.warning("undecodable cache entry %s; treating it as a miss", key)
            return None

    async def put(self, key: str, value: CachedResponse, ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        await self._call("put", lambda: self._redis.set(key, value.encode(), ex=ttl_s))

    async def record(self, model: str, outcome: Outcome, nbytes: int = 0) -> None:
        """Count one outcome; ``nbytes`` adds to ``bytes_served`` for hits only. Never raises."""

        async def bump() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(stats_key(model), FIELD_OF[outcome], 1)
                if outcome == "hit" and nbytes > 0:
                    pipe.hincrby(stats_key(model), "bytes_served", nbytes)
                await pipe.execute()

        try:
            await self._call("record", bump)
        except CacheUnavailable:
            pass
        except Exception:
            log.exception("recording a cache outcome failed")

    async def stats(self) -> dict[str, dict[str, float]]:
        keys = await self._scan("stats", f"{STATS_PREFIX}:*")

        async def fetch() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        rows = await self._call("stats", fetch) if keys else []
        result: dict[str, dict[str, float]] = {}
        for key, row in zip(keys, rows, strict=True):
            counts = {_text(k): float(v) for k, v in row.items()}
            result[model_of_stats_key(key)] = summarise(counts)
        return result

    async def purge(self, model: str | None = None) -> int:
        """Delete every entry of ``model`` (all models when None); returns how many."""
        removed = 0
        cursor = 0
        while True:
            cursor, keys = await self._scan_page("purge", cursor, entry_pattern(model))
            if keys:
                removed += int(await self._call("purge", partial(self._redis.unlink, *keys)))
            if cursor == 0:
                return removed

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _scan(self, op: str, pattern: str) -> list[str]:
        found: list[str] = []
        cursor = 0
        while True:
            cursor, keys = await self._scan_page(op, cursor, pattern)
            found.extend(keys)
            if cursor == 0:
                return sorted(set(found))  # SCAN may return a key twice

    async def _scan_page(self, op: str, cursor: int, pattern: str) -> tuple[int, list[str]]:
        page = await self._call(
            op, lambda: self._redis.scan(cursor, match=pattern, count=_SCAN_COUNT)
        )
        return int(page[0]), [_text(k) for k in page[1]]

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        self._admit(op)
        try:
            async with asyncio.timeout(self._budget_s):
                result = await fn()
        except (RedisError, *_UNREACHABLE) as exc:
            self._metrics.errors.labels(op).inc()
            if isinstance(exc, _UNREACHABLE):
                self._trip()
            raise CacheUnavailable(f"redis {op} failed: {type(exc).__name__}: {exc}") from exc
        if self._state != "closed":
            self._state = "closed"
            self._open_until = 0.0
        return result

    def _admit(self, op: str) -> None:
        if self._state == "closed":
            return
        now = self._clock()
        if now < self._open_until:
            raise CacheUnavailable(f"redis skipped for a cool-down after a failure ({op})")
        # The cool-down is over: this caller probes, the others keep skipping until it
        # answers. A probe that is cancelled simply expires and the next caller probes.
        self._state = "probing"
        self._open_until = now + self._budget_s

    def _trip(self) -> None:
        if self._state != "open":
            self._metrics.circuit_opens.inc()
        self._state = "open"
        self._open_until = self._clock() + self._cooldown_s


def _text(value: bytes | str) -> str:
    # The client is built without decode_responses (bodies are binary), so keys and hash
    # fields come back as bytes.
    return value.decode() if isinstance(value, bytes) else value
