"""BatchExecutor: continuous batching over a BatchingEngine, one engine thread, one loop.

Each iteration hops into the engine thread once: it opens the sessions admitted since the
last hop (the text frontend), advances the chosen rows by one token, and renders a batch
of ready chunks (token-to-mel, then vocoder). Requests join and leave between iterations.
Row choice is where priority acts inside the engine: a high request shrinks the batch
around it, because on a CPU each extra row makes the step slower for everyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.batching import BatchingEngine, ChunkJob, Session
from .host import SchedulerHost
from .spans import now_ns, record_stage
from .ticket import Ticket


@dataclass(eq=False)
class _Row:
    ticket: Ticket
    session: Session
    generate_start_ns: int | None = None


@dataclass(eq=False)
class _Pending:
    ticket: Ticket
    job: ChunkJob


@dataclass
class _Iteration:
    """What one hop into the engine thread produced; applied back on the event loop."""

    opened: list[tuple[Ticket, Session | Exception, int, int]] = field(default_factory=list)
    step_ns: tuple[int, int] = (0, 0)
    step_errors: dict[Ticket, Exception] = field(default_factory=dict)
    chunks: list[_Pending] = field(default_factory=list)
    rendered: list[tuple[_Pending, np.ndarray | Exception]] = field(default_factory=list)
    render_ns: tuple[int, int, int] = (0, 0, 0)


def _each_or_alone(items: Sequence[Any], run: Callable[[Sequence[Any]], Any]) -> dict[int, Any]:
    """Run a batch; if it fails, run each item alone, so one bad request fails only itself.

    Returns index -> result or exception. This is also how a CUDA OOM in a large batch
    fails only the requests that cannot run even alone.
    """
    try:
        result = run(items)
        return {i: (result[i] if result is not None else None) for i in range(len(items))}
    except Exception as exc:
        if len(items) == 1:
            return {0: exc}
    out: dict[int, Any] = {}
    for i, item in enumerate(items):
        try:
            single = run([item])
            out[i] = single[0] if single is not None else None
        except Exception as exc:
            out[i] = exc
    return out


class BatchExecutor:
    def __init__(self, host: SchedulerHost, engine: BatchingEngine) -> None:
        self.host = host
        self.engine = engine
        self.policy = host.policy
        # One thread: torch already spreads one call over every core, and the model's
        # state must never be touched by two calls at once.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tts-engine")
        self.rows: list[_Row] = []
        self.pending: list[_Pending] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.host
        while True:
            self._drop_finished()
            if not self.rows and not self.pending:
                if not s.queued():
                    await s.wait_for_work()
                    continue
                if self.policy.max_wait_s > 0 and s.queued() < self.policy.max_batch_size:
                    # Dynamic batching: an idle engine waits a moment for a batch to form.
                    await asyncio.sleep(self.policy.max_wait_s)
            admitted = self._admit()
            rows = self._choose_rows()
            jobs = self._choose_jobs()
            done = await loop.run_in_executor(self._thread, self._iterate, admitted, rows, jobs)
            self._apply(done, rows)

    def _admit(self) -> list[Ticket]:
        s, admitted = self.host, list[Ticket]()
        high_running = self._high_in_flight()
        while (level := s.next_level()) is not None:
            # High may exceed the batch size: it gets rows by preempting lower levels.
            limit = self.policy.max_batch_size * (2 if level == "high" else 1)
            if len(self.rows) + len(admitted) >= limit:
                break
            if high_running and level != "high":
                # Opening a session (the text frontend) is engine time too: lower levels
                # wait in the queue until high is done.
                break
            ticket = s.next_ticket()
            assert ticket is not None
            admitted.append(ticket)
        return admitted

    def _high_in_flight(self) -> bool:
        """A high request is generating, or has chunks still to render."""
        return any(r.ticket.level == "high" for r in self.rows) or any(
            p.ticket.level == "high" for p in self.pending
        )

    def _choose_rows(self) -> list[_Row]:
        # self.rows holds only sessions still generating (_drop_finished runs after each
        # iteration), so every row is a candidate.
        now, aging = self.host.clock(), self.policy.aging_s
        rank = {r: r.ticket.effective_rank(now, aging) for r in self.rows}
        ranked = sorted(self.rows, key=lambda r: (rank[r], r.ticket.arrived))
        if self._high_in_flight():
            top = [r for r in ranked if rank[r] == 0]
            rest = [r for r in ranked if rank[r] > 0]
            ranked = top + rest[: self.policy.rows_beside_high]
        return ranked[: self.policy.max_batch_size]

    def _choose_jobs(self) -> list[_Pending]:
        # First chunks of new streams outrank later chunks of running ones, then priority.
        now, aging = self.host.clock(), self.policy.aging_s
        rank = {p: p.ticket.effective_rank(now, aging) for p in self.pending}
        self.pending.sort(key=lambda p: (p.job.index > 0, rank[p], p.ticket.arrived, p.job.index))
        chosen = self.pending[: self.policy.max_batch_size]
        if self._high_in_flight():
            # A vocoder call over lower levels' backlog costs as much as dozens of LM
            # steps: while high generates, only rank-0 chunks (high, or aged) render.
            chosen = [p for p in chosen if rank[p] == 0]
        taken = set(chosen)
        self.pending = [p for p in self.pending if p not in taken]
        return chosen

    def _iterate(
        self, admitted: list[Ticket], rows: list[_Row], jobs: list[_Pending]
    ) -> _Iteration:
        """Runs in the engine thread; touches no asyncio object."""
        out = _Iteration()
        for ticket in admitted:
            start = now_ns()
            try:
                session: Session | Exception = self.engine.open_session(ticket.request)
            except Exception as exc:
                session = exc
            out.opened.append((ticket, session, start, now_ns()))
        if rows:
            start = now_ns()
            results = _each_or_alone([r.session for r in rows], self._step)
            out.step_ns = (start, now_ns())
            for i, row in enumerate(rows):
                if isinstance(results[i], Exception):
                    out.step_errors[row.ticket] = results[i]
                else:
                    out.chunks += [_Pending(row.ticket, j) for j in row.session.take_chunks()]
        if jobs:
            start = now_ns()
            mels = _each_or_alone([p.job for p in jobs], self.engine.tokens_to_mel)
            mel_end = now_ns()
            ok = [i for i in range(len(jobs)) if not isinstance(mels[i], Exception)]
            audio = _each_or_alone(
                [(jobs[i].job, mels[i]) for i in ok],
                lambda pairs: self.engine.vocode([j for j, _ in pairs], [m for _, m in pairs]),
            )
            out.render_ns = (start, mel_end, now_ns())
            by_job = {ok[k]: v for k, v in audio.items()}
            out.rendered = [(p, by_job.get(i, mels[i])) for i, p in enumerate(jobs)]
        return out

    def _step(self, sessions: Sequence[Session]) -> None:
        self.engine.step(sessions)

    def _apply(self, it: _Iteration, rows: list[_Row]) -> None:
        s, metrics = self.host, self.host.metrics
        for ticket, session, start, end in it.opened:
            if isinstance(session, Exception):
                s.fail(ticket, session)
                continue
            record_stage(ticket, "text_frontend", start, end, text_length=len(ticket.request.text))
            self.rows.append(_Row(ticket, session))
        if rows:
            s.report_batch_size(len(rows))
            if metrics is not None:
                metrics.batch_size.labels(metrics.engine, "generate_tokens").observe(len(rows))
        for row in rows:
            ticket = row.ticket
            if ticket in it.step_errors:
                s.fail(ticket, it.step_errors[ticket])
                continue
            ticket.max_batch = max(ticket.max_batch, len(rows))
            if row.generate_start_ns is None:
                row.generate_start_ns = it.step_ns[0]
            if row.session.finished:
                record_stage(
                    ticket,
                    "generate_tokens",
                    row.generate_start_ns,
                    it.step_ns[1],
                    batch_size=ticket.max_batch,
                )
        self.pending += it.chunks
        if it.rendered and metrics is not None:
            metrics.batch_size.labels(metrics.engine, "vocoder").observe(len(it.rendered))
        start, mel_end, end = it.render_ns
        for pending, result in it.rendered:
            ticket = pending.ticket
            if ticket.done:
                continue
            if isinstance(result, Exception):
                s.fail(ticket, result)
                continue
            n = len(it.rendered)
            record_stage(ticket, "tokens_to_mel", start, mel_end, batch_size=n)
            record_stage(ticket, "vocoder", mel_end, end, batch_size=n, chunk=pending.job.index)
            ticket.emit(result, s.clock())
            if pending.job.final:
                s.complete(ticket, self.engine.sample_rate)
        self._drop_finished()

    def _drop_finished(self) -> None:
        held = {r.ticket for r in self.rows} | {p.ticket for p in self.pending}
        for ticket in held:
            if ticket.cancelled:
                self.host.release(ticket)
        # A row whose session generated its last token still has chunks in `pending`.
        self.rows = [r for r in self.rows if not r.ticket.done and not r.session.finished]
        self.pending = [p for p in self.pending if not p.ticket.done]

    def cancel(self, ticket: Ticket) -> None:
        """Nothing to interrupt: the next iteration drops the cancelled row."""

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
