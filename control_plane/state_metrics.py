"""Prometheus gauges read from the control plane's state at scrape time: weights, rollouts, fleet.

Read, not pushed: the desired state, the rollout store and the fleet are the truth, and a
collector cannot drift from them the way a gauge set by hooks can after a restore, a restart
or a rollout resumed from SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.domain import DesiredState
from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.model import ACTIVE, TERMINAL, Rollout
from control_plane.service import ControlPlane

log = logging.getLogger(__name__)

# Every state is exported (1 for the current one, 0 for the rest), kube-state-metrics style,
# so `ttsgw_rollout_state{state="running"} == 1` is an alert and a graph has no gaps.
ROLLOUT_STATES: tuple[str, ...] = tuple(sorted(ACTIVE)) + tuple(sorted(TERMINAL))
# The newest rollouts read per scrape; an older finished rollout of a model drops out.
_ROLLOUTS_READ = 200


RolloutReader = Callable[[], Sequence[Rollout]]


class ControlPlaneCollector(Collector):
    """Callables, not objects: the collector needs three reads and no lifecycle."""

    def __init__(
        self,
        state: Callable[[], DesiredState],
        connected_nodes: Callable[[], int],
        rollouts: RolloutReader | None = None,
    ) -> None:
        self._state = state
        self._connected_nodes = connected_nodes
        self._rollouts = rollouts

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        weights = GaugeMetricFamily(
            "ttsgw_route_weight",
            "A model's split weight per backend in the head desired state (relative weights; "
            "a canary's share is its weight over the model's sum).",
            labels=["model", "backend"],
        )
        for model, spec in sorted(state.models.items()):
            for split in spec.splits:
                weights.add_metric([model, split.backend], split.weight)
        yield weights
        yield GaugeMetricFamily(
            "ttsgw_xds_connected_envoys",
            "Distinct Envoy node ids with at least one open ADS stream.",
            value=self._connected_nodes(),
        )
        yield from self._rollout_families()

    def _rollout_families(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "ttsgw_rollout_state",
            "The newest rollout of each model: 1 for its current state, 0 for the others.",
            labels=["model", "rollout", "canary", "state"],
        )
        weight = GaugeMetricFamily(
            "ttsgw_rollout_canary_weight_percent",
            "The canary's share of its model's traffic in the newest rollout of each model.",
            labels=["model", "rollout", "canary"],
        )
        for rollout in self._newest_per_model():
            labels = [rollout.model, str(rollout.id), rollout.canary]
            for name in ROLLOUT_STATES:
                states.add_metric([*labels, name], 1 if rollout.status == name else 0)
            weight.add_metric(labels, rollout.weight)
        yield states
        yield weight

    def _newest_per_model(self) -> list[Rollout]:
        if self._rollouts is None:
            return []
        try:
            found = self._rollouts()
        except Exception:
            # A scrape must not fail because the rollout store is busy or broken; the other
            # families still say what they know.
            log.exception("reading rollouts for /metrics failed")
            return []
        newest: dict[str, Rollout] = {}
        for rollout in found:
            if rollout.model not in newest or rollout.id > newest[rollout.model].id:
                newest[rollout.model] = rollout
        return [newest[m] for m in sorted(newest)]


def control_plane_collector(
    control_plane: ControlPlane, rollouts: RolloutController | None = None
) -> ControlPlaneCollector:
    """The collector over a running control plane and, when installed, its rollouts."""
    reader = None if rollouts is None else (lambda: rollouts.find(limit=_ROLLOUTS_READ))
    return ControlPlaneCollector(
        lambda: control_plane.head.state, lambda: len(control_plane.fleet.node_ids()), reader
    )
