"""The default executor factory: continuous batching where the engine can batch, else slots."""

from __future__ import annotations

from ..engines.base import Engine
from ..engines.batching import BatchingEngine
from .batch_executor import BatchExecutor
from .host import Executor, SchedulerHost
from .slot_executor import SlotExecutor


def make_executor(host: SchedulerHost, engine: Engine) -> Executor:
    if isinstance(engine, BatchingEngine):
        return BatchExecutor(host, engine)
    return SlotExecutor(host, engine)
