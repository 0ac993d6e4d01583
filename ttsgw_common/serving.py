"""uvicorn on a socket bound up front: shared by the workers and the span relay.

Binding first makes a taken port fail fast (before an engine spends minutes loading)
and lets tests ask for port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening, non-blocking TCP socket on host:port; raises OSError as the OS does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without
    # it every response on a kept-alive connection waited ~40 ms for Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class SocketServer:
    """A uvicorn server serving on its own bound socket, in the foreground or a task."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.socket = sock
        self.port: int = sock.getsockname()[1]

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.server.should_exit = True

    @contextlib.asynccontextmanager
    async def serving(self, stopped_early: Exception) -> AsyncIterator[asyncio.Task[None]]:
        """Serve in a background task until the block ends; yields once uvicorn started.

        If the server stops during start-up, its own error is raised, else `stopped_early`.
        """
        task = asyncio.create_task(self.serve())
        try:
            while not self.server.started:
                if task.done():
                    task.result()
                    raise stopped_early
                await asyncio.sleep(0.01)
            yield task
        finally:
            self.stop()
            await task
