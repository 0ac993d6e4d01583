"""Serving a worker app with uvicorn on a socket bound up front (port 0 works in tests)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator

import uvicorn

from ttsgw_common import serving

from .app import create_app
from .engines.base import Engine
from .errors import PortInUseError, StartupError
from .settings import WorkerSettings
from .voice_registry import VoiceRegistry, create_voice_registry


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before loading the engine, so a taken port fails fast, not after minutes of load."""
    try:
        return serving.bind_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"cannot listen on {host}:{port}: address already in use") from exc
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


class WorkerServer(serving.SocketServer):
    """A uvicorn server with its bound socket; `load_error` is set if the engine failed."""

    def __init__(
        self,
        engine: Engine,
        settings: WorkerSettings,
        sock: socket.socket,
        voice_registry: VoiceRegistry | None = None,
    ) -> None:
        self.engine = engine
        self.host = settings.host
        self.load_error: Exception | None = None
        self.app = create_app(
            engine,
            settings,
            on_load_failure=self._on_load_failure,
            voice_registry=voice_registry or create_voice_registry(settings.redis_url),
        )
        config = uvicorn.Config(
            self.app,
            log_level=settings.log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        super().__init__(uvicorn.Server(config), sock)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _on_load_failure(self, exc: Exception) -> None:
        self.load_error = exc
        self.server.should_exit = True

    @contextlib.asynccontextmanager
    async def running(self, *, wait_ready: float | None = 30.0) -> AsyncIterator[WorkerServer]:
        """Serve in a background task; with `wait_ready`, wait until the engine is warm."""
        async with self.serving(StartupError("worker server stopped during startup")):
            if wait_ready is not None:
                await self._wait_ready(wait_ready)
            yield self

    async def _wait_ready(self, timeout: float) -> None:
        lifecycle = self.app.state.lifecycle
        deadline = asyncio.get_running_loop().time() + timeout
        while not lifecycle.ready:
            if lifecycle.error:
                raise StartupError(f"engine failed to load: {lifecycle.error}")
            if asyncio.get_running_loop().time() > deadline:
                raise StartupError(f"engine not ready after {timeout:g} s")
            await asyncio.sleep(0.01)


def create_server(
    engine: Engine, settings: WorkerSettings, voice_registry: VoiceRegistry | None = None
) -> tuple[WorkerServer, int]:
    """Bind `settings.host:settings.listen_port` (0 = any free port) and wrap the app.

    The voice registry comes from `settings.redis_url` unless one is passed (tests).
    """
    sock = bind_socket(settings.host, settings.listen_port)
    server = WorkerServer(engine, settings, sock, voice_registry)
    return server, server.port
