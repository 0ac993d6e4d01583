"""The versioned contract the gateway filter long-polls: models, limits and cache policy.

The filter keeps its last good copy when the control plane is down, so everything it
needs to validate, route and cache a request travels in this one document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from control_plane.domain import DesiredState, ModelSpec


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


def gateway_config(state: DesiredState, revision: int, route_secret: str = "") -> dict[str, Any]:
    policy = state.gateway
    body: dict[str, Any] = {
        "models": {
            name: {
                "backends": [s.backend for s in model.splits if s.weight > 0],
                "cache_ttl_s": model.cache_ttl_s,
                "cache_generation": cache_generation(model),
                "clones_voices": clones_voices(state, model),
            }
            for name, model in sorted(state.models.items())
        },
        "voices": {"default_model": voice_model(state)},
        "limits": {
            "max_input_chars": policy.max_input_chars,
            "max_prompt_audio_bytes": policy.max_prompt_audio_bytes,
            "max_prompt_audio_seconds": policy.max_prompt_audio_seconds,
            "min_speed": policy.min_speed,
            "max_speed": policy.max_speed,
        },
        "cache": {
            "enabled": policy.cache_enabled,
            "max_entry_bytes": policy.cache_max_entry_bytes,
        },
        "auth": {
            "require_api_keys": policy.require_api_keys,
            "route_secret": route_secret,
            # SHA-256 of each key -> its class; the filter hashes what the client sends.
            "keys": {
                key_hash: name
                for name, cls in sorted(state.priority_classes.items())
                for key_hash in cls.api_key_hashes
            },
            "classes": {
                name: {"level": cls.level, "rate_limit_rps": cls.rate_limit_rps}
                for name, cls in sorted(state.priority_classes.items())
            },
        },
    }
    # The revision is left out of the version on purpose: a write that changes nothing the
    # filter uses (a health check, a timeout) must not wake every filter.
    return {"version": _digest(body, 16), "revision": revision, **body}
