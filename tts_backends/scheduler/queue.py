"""LevelQueues: FIFO per priority level, picked by aged rank; limits, eviction, timeouts."""

from __future__ import annotations

from collections import deque

from .levels import LEVELS, RANK
from .policy import SchedulerPolicy
from .ticket import Ticket


class Rejected(Exception):
    """A ticket the queues refused or dropped, with why (a metrics label)."""

    def __init__(self, ticket: Ticket, reason: str) -> None:
        super().__init__(reason)
        self.ticket = ticket
        self.reason = reason


class LevelQueues:
    def __init__(self, policy: SchedulerPolicy) -> None:
        self.policy = policy
        self._queues: dict[str, deque[Ticket]] = {level: deque() for level in LEVELS}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def depths(self) -> dict[str, int]:
        return {level: len(q) for level, q in self._queues.items()}

    def ahead_of(self, level: str) -> int:
        """Queued requests a new arrival at `level` would wait behind (ignoring aging)."""
        return sum(len(self._queues[lv]) for lv in LEVELS if RANK[lv] <= RANK[level])

    def oldest_wait_s(self, level: str, now: float) -> float:
        q = self._queues[level]
        return now - q[0].arrived if q else 0.0

    def push(self, ticket: Ticket) -> Ticket | None:
        """Queue `ticket`; returns a lower-level ticket it evicted, or raises Rejected."""
        level = ticket.level
        if len(self._queues[level]) >= self.policy.queue_limits[level]:
            raise Rejected(ticket, "queue_full")
        evicted = None
        if len(self) >= self.policy.max_queue_depth:
            evicted = self._evict_below(level)
            if evicted is None:
                raise Rejected(ticket, "queue_full")
        self._queues[level].append(ticket)
        return evicted

    def _evict_below(self, level: str) -> Ticket | None:
        # The newest of the lowest level: it has waited least, so dropping it wastes least.
        for lower in reversed(LEVELS):
            if RANK[lower] <= RANK[level]:
                return None
            if self._queues[lower]:
                return self._queues[lower].pop()
        return None

    def pop(self, now: float) -> Ticket | None:
        best = self.peek(now)
        if best is not None:
            self._queues[best.level].popleft()
        return best

    def peek(self, now: float) -> Ticket | None:
        """The best queued ticket: lowest aged rank, then the longest waiting."""
        best: Ticket | None = None
        best_key: tuple[int, float] | None = None
        for q in self._queues.values():
            if not q:
                continue
            head = q[0]
            key = (head.effective_rank(now, self.policy.aging_s), head.arrived)
            if best_key is None or key < best_key:
                best, best_key = head, key
        return best

    def remove(self, ticket: Ticket) -> bool:
        try:
            self._queues[ticket.level].remove(ticket)
        except ValueError:
            return False
        return True

    def expire(self, now: float) -> list[Ticket]:
        """Drop and return tickets that waited longer than their level's queue timeout."""
        expired = []
        for level, q in self._queues.items():
            timeout = self.policy.queue_timeouts_s[level]
            while q and now - q[0].arrived > timeout:
                expired.append(q.popleft())
        return expired
