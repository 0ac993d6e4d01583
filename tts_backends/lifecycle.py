"""The engine's lifecycle inside a worker: load, warm up, and report readiness."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .engines.base import Engine, SynthesisRequest
from .errors import WorkerError

log = logging.getLogger(__name__)

WARMUP_TEXT = "Warm up."


class EngineLifecycle:
    """Loads the engine in the background so /health answers while weights load."""

    def __init__(
        self,
        engine: Engine,
        *,
        warmup: bool = True,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        self.engine = engine
        self.warmup = warmup
        self.on_failure = on_failure
        self.warm = False
        self.error: str | None = None

    @property
    def ready(self) -> bool:
        return self.engine.ready and self.warm

    async def start(self) -> None:
        try:
            if not self.engine.ready:
                await self.engine.load()
            if self.warmup:
                await self._warm_up()
            self.warm = True
            log.info("engine %s ready", self.engine.name)
        except Exception as exc:
            # A load failure is a one-line message for the operator, not a traceback.
            self.error = exc.message if isinstance(exc, WorkerError) else f"{exc!r}"
            if self.on_failure is not None:
                self.on_failure(exc)  # the owner reports it, once
            else:
                log.error("engine %s failed to load: %s", self.engine.name, self.error)

    async def _warm_up(self) -> None:
        # An engine that knows how to warm itself up does (cosyvoice3 with no voices uses a
        # generated prompt clip); otherwise its first voice speaks once. An engine with
        # neither warms on first use.
        warm_up = getattr(self.engine, "warm_up", None)
        if callable(warm_up):
            await warm_up()
            return
        voices = self.engine.voices()
        if voices:
            await self.engine.synthesize(SynthesisRequest(text=WARMUP_TEXT, voice=voices[0].id))
