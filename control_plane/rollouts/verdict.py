"""The gate check: one interval of the canary's figures against the rollout's gates."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.metrics.source import WindowStats
from control_plane.rollouts.model import Gates, Verdict


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def judge(stats: WindowStats, gates: Gates) -> Judgement:
    """pass | fail | thin. Thin traffic is no evidence either way, so it never fails a check."""
    window = f"{stats.window_s:g}s"
    if stats.requests < gates.min_requests or stats.requests == 0:
        return Judgement(
            "thin",
            f"only {stats.requests} canary request(s) in {window}; "
            f"{gates.min_requests} needed to judge",
        )
    failures = []
    success = stats.success_rate
    assert success is not None  # requests > 0
    if success < gates.min_success_rate:
        failures.append(
            f"success rate {success:.2%} below {gates.min_success_rate:.2%} "
            f"({stats.errors_5xx} of {stats.requests} were 5xx)"
        )
    if (
        gates.max_p99_ms is not None
        and stats.p99_ms is not None
        and (stats.p99_ms > gates.max_p99_ms)
    ):
        failures.append(f"p99 {stats.p99_ms:g} ms above {gates.max_p99_ms:g} ms")
    if failures:
        return Judgement("fail", "; ".join(failures))
    if gates.max_p99_ms is not None and stats.p99_ms is None:
        # A latency gate without latency figures cannot pass; wait for histograms.
        return Judgement("thin", f"no p99 figure for the canary in {window} yet")
    p99 = "" if stats.p99_ms is None else f", p99 {stats.p99_ms:g} ms"
    return Judgement("pass", f"success rate {success:.2%} over {stats.requests} requests{p99}")
