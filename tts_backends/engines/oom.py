"""The GPU memory guard: a CUDA out-of-memory error fails one call, never the worker."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from ..errors import EngineOutOfMemoryError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def oom_guard(engine: str) -> Iterator[None]:
    """Translate torch's OOM into a retriable 503 after giving the cached memory back."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("%s ran out of GPU memory; the request fails, the worker stays up", engine)
        raise EngineOutOfMemoryError(
            f"Engine {engine!r} ran out of GPU memory for this request; retry it, or send "
            "shorter input."
        ) from exc
