"""The Redis key layout of the response cache, and the canonical request a cache key hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

KEY_PREFIX = "ttsgw:cache:v1"
STATS_PREFIX = "ttsgw:cache:stats"

# Characters that SCAN's MATCH treats as glob syntax; model names never contain them
# today (domain.Name), but a purge must never widen to other models if that changes.
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def canonical_request(
    *,
    model: str,
    voice: str,
    input: str,
    response_format: str,
    speed: float,
    instructions: str | None,
    stream_format: str,
    prompt_audio: bytes | None,
    prompt_text: str | None,
) -> dict[str, object]:
    """Everything that can change the audio, in the form ``request_key`` hashes.

    ``prompt_audio`` is the DECODED audio, so two base64 spellings of the same bytes share
    an entry; only its sha256 enters the key. ``speed`` is a float so 1 and 1.0 agree.
    """
    return {
        "model": model,
        "voice": voice,
        "input": input,
        "response_format": response_format,
        "speed": float(speed),
        "instructions": instructions,
        "stream_format": stream_format,
        "prompt_audio_sha256": (
            hashlib.sha256(prompt_audio).hexdigest() if prompt_audio is not None else None
        ),
        "prompt_text": prompt_text,
    }


def request_key(model: str, generation: str, canonical: Mapping[str, object]) -> str:
    """The cache key of one request; ``generation`` changes with the model's splits."""
    blob = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return f"{KEY_PREFIX}:{model}:{generation}:{digest}"


def entry_pattern(model: str | None = None) -> str:
    """The SCAN MATCH pattern of every entry of ``model``, or of every model."""
    scope = "*" if model is None else model.translate(_GLOB_SPECIAL)
    return f"{KEY_PREFIX}:{scope}:*"


def stats_key(model: str) -> str:
    return f"{STATS_PREFIX}:{model}"


def model_of_stats_key(key: str) -> str:
    return key[len(STATS_PREFIX) + 1 :]
