"""The pure translator: a desired state in, a complete and deterministic set of Envoy resources out.

No I/O. Every resource list is sorted by name, so the same state always serializes to
the same bytes and snapshot hashes stay stable.
"""

from __future__ import annotations

from dataclasses import replace

from control_plane.domain import DesiredState
from control_plane.translator.clusters import (
    backend_cluster,
    ext_proc_cluster,
    load_assignment,
    uses_eds,
    zipkin_cluster,
)
from control_plane.translator.listener import listener
from control_plane.translator.options import TracingOptions, TranslatorOptions
from control_plane.translator.routes import route_configuration
from control_plane.xds.resources import Resources

__all__ = ["TracingOptions", "TranslatorOptions", "retranslate", "translate"]


def translate(state: DesiredState, options: TranslatorOptions | None = None) -> Resources:
    options = options or TranslatorOptions()
    backends = sorted(state.backends.items())
    clusters = [backend_cluster(name, spec) for name, spec in backends]
    clusters.append(ext_proc_cluster(options))
    if options.tracing is not None:
        clusters.append(zipkin_cluster(options.tracing))
    endpoints = [load_assignment(name, spec) for name, spec in backends if uses_eds(spec)]
    return Resources(
        clusters=tuple(sorted(clusters, key=lambda c: c.name)),
        endpoints=tuple(endpoints),
        listeners=(listener(options),),
        routes=(route_configuration(state, options),),
    )


def retranslate(
    state: DesiredState,
    options: TranslatorOptions,
    previous_state: DesiredState,
    previous: Resources,
) -> Resources:
    """`translate`, reusing `previous`'s clusters, endpoints and listeners when backends match.

    Those depend only on the backends and the options, so a change to models alone (a
    weight change, a new model) rebuilds just the RouteConfiguration. The reused tuples
    are the same objects, which lets `Snapshot.build` skip re-encoding them.
    """
    if state.backends != previous_state.backends:
        return translate(state, options)
    return replace(previous, routes=(route_configuration(state, options),))
