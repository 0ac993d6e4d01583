"""The span relay's decision: buffer spans per trace, keep or drop whole traces, bounded.

Pure and clock-injected (no I/O), so every rule is testable without sockets; the HTTP side
is ``relay_server.py``.

A trace is decided ``grace_s`` after its root span (the one without a parent: Envoy's
ingress span) arrives, or ``max_wait_s`` after its first span when no root comes. The
grace lets the filter's and the workers' batches, which may trail Envoy's report, join
the trace before the verdict. The verdict:

- keep when any span is an error (an ``error`` tag, or a root answered with >= 400), unless
  the root says the client hung up before any response (``client_went_away``),
- keep when the root took longer than ``slow_threshold_s``,
- else keep when the trace id's hash is under ``ratio`` (``sampling.keeps``), else drop.

A decided trace's id is remembered (bounded LRU), so a span arriving after the verdict
follows it. When ``max_spans`` are buffered the oldest trace is decided early rather than
letting memory grow; spans are never silently lost: every drop is counted by reason.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ttsgw_common.telemetry.sampling import keeps

# A Zipkin v2 span as reported: a JSON object (dict), or a ``zipkin.proto3.Span`` message
# (zipkin_proto.py) that stays a message unless its trace is kept.
Span = Any
# What a verdict needs of one span: (trace id as 32 hex digits, is root, is error, root
# duration in seconds, root says the client went away); None for a malformed span.
Digest = tuple[str, bool, bool, float, bool]


class Verdict(enum.Enum):
    KEPT_ERROR = "kept_error"
    KEPT_SLOW = "kept_slow"
    KEPT_RATIO = "kept_ratio"
    DROPPED = "dropped"

    @property
    def kept(self) -> bool:
        return self is not Verdict.DROPPED


class _Trace:
    __slots__ = ("client_went_away", "error", "root_duration_s", "spans")

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.error = False
        self.client_went_away = False
        self.root_duration_s: float | None = None


@dataclass(frozen=True)
class SamplerPolicy:
    ratio: float = 0.1
    slow_threshold_s: float = 1.0
    grace_s: float = 1.0
    max_wait_s: float = 10.0
    max_spans: int = 100_000
    max_decided: int = 200_000


@dataclass
class Outcome:
    """What one call produced: spans to forward and what happened to the rest."""

    forward: list[Span] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def verdict_counts(self) -> Counter[Verdict]:
        return Counter(self.verdicts)


def digest_json(span: dict[str, Any]) -> Digest | None:
    trace_id = span.get("traceId")
    if not isinstance(trace_id, str) or not trace_id:
        return None
    root = "parentId" not in span
    duration_s = float(span.get("duration", 0)) / 1e6 if root else 0.0
    went_away = root and client_went_away(span)
    return trace_id.lower().rjust(32, "0"), root, is_error(span), duration_s, went_away


def is_error(span: Span) -> bool:
    tags = span.get("tags") or {}
    if "error" in tags:
        return True
    status = str(tags.get("http.status_code", ""))
    return "parentId" not in span and status.isdigit() and int(status) >= 400


def client_went_away(root: Span) -> bool:
    """Envoy's root span of a request whose client hung up before any response."""
    # Status 0 with flag DC alone, e.g. every request in flight when a load generator
    # stops. Envoy tags that root `error`, and the cut cascades: the router's span ends
    # with status 0, the worker's with 499. Nothing failed on our side, so none of it is
    # an error; a client that gave up because we were slow is still kept as slow.
    tags = root.get("tags") or {}
    return tags.get("response_flags") == "DC" and str(tags.get("http.status_code", "0")) == "0"


class TailSampler:
    """Per-trace buffers and verdicts; O(1) per span and per decision, whatever the load."""

    def __init__(self, policy: SamplerPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self._pending: dict[str, _Trace] = {}
        # When to decide, in the order deadlines were set: both queues are sorted by
        # construction (the clock is monotonic and each queue adds a constant), so
        # flush_due only looks at their heads. An entry whose trace was decided by the
        # other queue is skipped when it comes up.
        self._after_root: deque[tuple[float, str]] = deque()
        self._after_first: deque[tuple[float, str]] = deque()
        self._decided: OrderedDict[str, Verdict] = OrderedDict()
        self._buffered = 0

    @property
    def buffered_spans(self) -> int:
        return self._buffered

    def add(
        self, spans: Iterable[Span], digest: Callable[[Any], Digest | None] = digest_json
    ) -> Outcome:
        """Take one report's spans; spans of already-decided traces come straight back."""
        out = Outcome()
        now = self._clock()
        pending, decided = self._pending, self._decided
        for span in spans:
            d = digest(span)
            if d is None:
                out.drop("malformed", 1)
                continue
            trace_id, root, error, duration_s, went_away = d
            verdict = decided.get(trace_id)
            if verdict is not None:
                if verdict.kept:
                    out.forward.append(span)
                else:
                    out.drop("sampled_out", 1)
                continue
            trace = pending.get(trace_id)
            if trace is None:
                trace = pending[trace_id] = _Trace()
                self._after_first.append((now + self.policy.max_wait_s, trace_id))
            trace.spans.append(span)
            self._buffered += 1
            if error:
                trace.error = True
            if root:
                if trace.root_duration_s is None:
                    self._after_root.append((now + self.policy.grace_s, trace_id))
                trace.root_duration_s = duration_s
                trace.client_went_away = went_away
        while self._buffered > self.policy.max_spans and pending:
            self._decide(next(iter(pending)), out)
        return out

    def flush_due(self) -> Outcome:
        """Decide every trace whose time has come; call this periodically."""
        out = Outcome()
        now = self._clock()
        for queue in (self._after_root, self._after_first):
            while queue and queue[0][0] <= now:
                trace_id = queue.popleft()[1]
                if trace_id in self._pending:
                    self._decide(trace_id, out)
        return out

    def flush_all(self) -> Outcome:
        """Decide everything now (shutdown)."""
        out = Outcome()
        for trace_id in list(self._pending):
            self._decide(trace_id, out)
        self._after_root.clear()
        self._after_first.clear()
        return out

    def verdict(self, trace_id: str) -> Verdict:
        trace = self._pending[trace_id]
        if trace.error and not trace.client_went_away:
            return Verdict.KEPT_ERROR
        if (
            trace.root_duration_s is not None
            and trace.root_duration_s > self.policy.slow_threshold_s
        ):
            return Verdict.KEPT_SLOW
        if keeps(trace_id, self.policy.ratio):
            return Verdict.KEPT_RATIO
        return Verdict.DROPPED

    def _decide(self, trace_id: str, out: Outcome) -> None:
        verdict = self.verdict(trace_id)
        trace = self._pending.pop(trace_id)
        self._buffered -= len(trace.spans)
        out.verdicts.append(verdict)
        if verdict.kept:
            out.forward.extend(trace.spans)
        else:
            out.drop("sampled_out", len(trace.spans))
        self._decided[trace_id] = verdict
        while len(self._decided) > self.policy.max_decided:
            self._decided.popitem(last=False)
