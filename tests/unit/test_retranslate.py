"""A models-only change re-translates and re-encodes only the routes, with identical results."""

from __future__ import annotations

from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelSpec,
    Split,
    default_state,
)
from control_plane.translator import TranslatorOptions, retranslate, translate
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.xds.snapshot import Snapshot

OPTIONS = TranslatorOptions()


def _reweighted() -> tuple[DesiredState, DesiredState]:
    before = default_state()
    after = before.model_copy(
        update={
            "models": {
                **before.models,
                "espeak": ModelSpec(
                    splits=[
                        Split(backend="espeak", weight=70),
                        Split(backend="cosyvoice3", weight=30),
                    ]
                ),
            }
        }
    )
    return before, after


def test_models_only_change_reuses_everything_but_routes() -> None:
    before, after = _reweighted()
    previous = translate(before, OPTIONS)
    reused = retranslate(after, OPTIONS, before, previous)
    fresh = translate(after, OPTIONS)
    assert reused.clusters is previous.clusters
    assert reused.endpoints is previous.endpoints
    assert reused.listeners is previous.listeners
    assert reused == fresh  # same messages as a translation from scratch


def test_backend_change_translates_from_scratch() -> None:
    before = default_state()
    after = before.model_copy(
        update={
            "backends": {
                **before.backends,
                "espeak": BackendSpec(endpoints=[Endpoint(host="127.0.0.9", port=8101)]),
            }
        }
    )
    previous = translate(before, OPTIONS)
    result = retranslate(after, OPTIONS, before, previous)
    assert result.clusters is not previous.clusters
    assert result == translate(after, OPTIONS)


def test_snapshot_reuses_unchanged_types_and_matches_a_fresh_build() -> None:
    before, after = _reweighted()
    first = Snapshot.build(translate(before, OPTIONS))
    second = Snapshot.build(retranslate(after, OPTIONS, before, first.resources), first)
    fresh = Snapshot.build(translate(after, OPTIONS))
    for type_url in (CLUSTER, ENDPOINT, LISTENER):
        assert second.types[type_url] is first.types[type_url]
    assert second.types[ROUTE] is not first.types[ROUTE]
    assert second.versions == fresh.versions and second.version == fresh.version
