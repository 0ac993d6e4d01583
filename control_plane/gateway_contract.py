"""The versioned contract the gateway filter long-polls: models, limits and cache policy.

The filter keeps its last good copy when the control plane is down, so everything it
needs to validate, route and cache a request travels in this one document.
"""

from __future__ import annotations

import hashlib
import json

from control_plane.domain import DesiredState, ModelSpec
from ttsgw_contract.gateway_config import (
    AuthPolicy,
    CachePolicy,
    FilterTimeouts,
    GatewayConfig,
    ModelRoute,
    PriorityClass,
    VoicePolicy,
)
from ttsgw_contract.limits import SpeechLimits

# Stands in for the version while the digest over everything else is taken.
_UNVERSIONED = "-"


def _digest(value: object, size: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:size]


def cache_generation(model: ModelSpec) -> str:
    """Changes whenever the splits change, so no entry outlives the variants that made it."""
    return _digest([s.model_dump() for s in model.splits], 8)


# Backend kinds whose workers serve /v1/voices (cloning from a prompt clip).
CLONING_KINDS = frozenset({"cosyvoice3"})


def clones_voices(state: DesiredState, model: ModelSpec) -> bool:
    """Every backend the model can send a request to clones, so a voice works wherever it lands."""
    backends = [state.backends.get(s.backend) for s in model.splits if s.weight > 0]
    return bool(backends) and all(b is not None and b.kind in CLONING_KINDS for b in backends)


def voice_model(state: DesiredState) -> str | None:
    """Where /v1/voices goes without ?model=: the first cloning model in name order."""
    return next((n for n, m in sorted(state.models.items()) if clones_voices(state, m)), None)


def gateway_config(
    state: DesiredState,
    revision: int,
    route_secret: str = "",
    timeouts: FilterTimeouts | None = None,
) -> GatewayConfig:
    """The filter's view of `state`; `timeouts` are the ext_proc timers the translator set."""
    policy = state.gateway
    config = GatewayConfig(
        version=_UNVERSIONED,
        models={
            name: ModelRoute(
                backends=tuple(s.backend for s in model.splits if s.weight > 0),
                cache_ttl_s=model.cache_ttl_s,
                cache_generation=cache_generation(model),
                clones_voices=clones_voices(state, model),
            )
            for name, model in sorted(state.models.items())
        },
        voices=VoicePolicy(default_model=voice_model(state)),
        limits=SpeechLimits(
            max_input_chars=policy.max_input_chars,
            max_prompt_audio_bytes=policy.max_prompt_audio_bytes,
            max_prompt_audio_seconds=policy.max_prompt_audio_seconds,
            min_speed=policy.min_speed,
            max_speed=policy.max_speed,
        ),
        timeouts=timeouts if timeouts is not None else FilterTimeouts(),
        cache=CachePolicy(
            enabled=policy.cache_enabled, max_entry_bytes=policy.cache_max_entry_bytes
        ),
        auth=AuthPolicy(
            require_api_keys=policy.require_api_keys,
            route_secret=route_secret,
            # SHA-256 of each key -> its class; the filter hashes what the client sends.
            keys={
                key_hash: name
                for name, cls in sorted(state.priority_classes.items())
                for key_hash in cls.api_key_hashes
            },
            classes={
                name: PriorityClass(level=cls.level, rate_limit_rps=cls.rate_limit_rps)
                for name, cls in sorted(state.priority_classes.items())
            },
        ),
    )
    # The version digests exactly what the filter parses, minus the revision on purpose: a
    # write that changes nothing the filter uses (a health check, a timeout) must not wake
    # every filter.
    body = config.model_dump(mode="json", exclude={"version", "revision"})
    return config.model_copy(update={"version": _digest(body, 16), "revision": revision})
