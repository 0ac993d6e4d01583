"""Voice resolution: OpenAI's voice names and an engine's own voice ids, to one engine voice."""

from __future__ import annotations

from .engines.base import Engine
from .errors import UnknownVoiceError


def resolve_voice(engine: Engine, name: str) -> str:
    """Return the engine voice id for `name` (an engine voice id or an OpenAI alias)."""
    ids = {v.id for v in engine.voices()}
    if name in ids:
        return name
    target = engine.openai_aliases().get(name)
    if target is not None:
        return target
    known = sorted(ids | set(engine.openai_aliases()))
    hint = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    raise UnknownVoiceError(
        f"Unknown voice {name!r} for engine {engine.name!r}. "
        f"Known voices: {hint or '(none registered)'}. See GET /v1/audio/voices."
    )
