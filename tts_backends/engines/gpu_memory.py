"""The GPU memory guard: a CUDA out-of-memory fails one request, never the worker.

Engines run their model calls inside ``oom_guard()``. It turns torch's
``OutOfMemoryError`` (``torch.cuda.OutOfMemoryError`` is the same class) into
``EngineOutOfMemoryError`` (503, retriable at the gateway) after dropping the failed
call's tensors and handing the cached blocks back to the CUDA allocator, so the next
request finds the memory free and the worker stays ready.

torch is looked up in ``sys.modules``, never imported: an engine that never imported
torch cannot have raised torch's error, and the HTTP layer stays torch-free.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Iterator

from ..errors import EngineOutOfMemoryError

log = logging.getLogger(__name__)

# What older torch builds and some CUDA paths raise as a plain RuntimeError.
_OOM_MESSAGES = ("CUDA out of memory", "CUDA error: out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def release_cached_memory() -> None:
    """Collect the failed call's garbage, then return cached CUDA blocks to the driver."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def oom_guard(engine_name: str) -> Iterator[None]:
    """Run a model call; a CUDA OOM becomes EngineOutOfMemoryError with the memory freed."""
    detail = ""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    # Outside the except block: the exception, its traceback and the frames holding the
    # failed call's tensors are gone now, so the collection below can free them.
    if detail:
        release_cached_memory()
        log.warning("engine %s ran out of GPU memory: %s", engine_name, detail)
        raise EngineOutOfMemoryError(
            f"Engine {engine_name!r} ran out of GPU memory for this request; retry it."
        )
