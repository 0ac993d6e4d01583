"""The Redis key layout of the response cache, and the canonical request a cache key hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, overload

from ttsgw_contract.speech import SpeechRequest

KEY_PREFIX = "ttsgw:cache:v1"
STATS_PREFIX = "ttsgw:cache:stats"

# Characters that SCAN's MATCH treats as glob syntax; model names never contain them
# today (domain.Name), but a purge must never widen to other models if that changes.
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


@overload
def canonical_request(request: SpeechRequest, /) -> dict[str, object]: ...
@overload
def canonical_request(**fields: Any) -> dict[str, object]: ...
def canonical_request(request: SpeechRequest | None = None, /, **fields: Any) -> dict[str, object]:
    """Everything that can change the audio, in the form ``request_key`` hashes.

    Every field of SpeechRequest enters, so a field added there changes the key. The
    keyword form (one argument per field) is validated into a SpeechRequest first: a
    misspelt field raises rather than silently sharing entries. ``prompt_audio`` is the
    DECODED audio, so two base64 spellings of the same bytes share an entry; only its
    sha256 enters the key. ``speed`` is a float so 1 and 1.0 agree.
    """
    if request is None:
        request = SpeechRequest.model_validate(fields)
    # __dict__ holds exactly the fields; model_dump would cost more than the hash.
    canonical: dict[str, object] = dict(request.__dict__)
    del canonical["prompt_audio"]
    canonical["speed"] = float(request.speed)
    audio = request.prompt_audio
    canonical["prompt_audio_sha256"] = (
        hashlib.sha256(audio).hexdigest() if audio is not None else None
    )
    return canonical


def request_key(model: str, generation: str, canonical: Mapping[str, object]) -> str:
    """The cache key of one request; ``generation`` changes with the model's splits."""
    blob = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    # surrogatepass: a request the parser let through always has a key; lone surrogates
    # are refused there (speech.Text), but a key must never be the thing that raises.
    digest = hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}:{model}:{generation}:{digest}"


def entry_pattern(model: str | None = None) -> str:
    """The SCAN MATCH pattern of every entry of ``model``, or of every model."""
    scope = "*" if model is None else model.translate(_GLOB_SPECIAL)
    return f"{KEY_PREFIX}:{scope}:*"


def stats_key(model: str) -> str:
    return f"{STATS_PREFIX}:{model}"


def model_of_stats_key(key: str) -> str:
    return key[len(STATS_PREFIX) + 1 :]
