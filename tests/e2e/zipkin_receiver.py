"""A Zipkin-compatible receiver for tests: accepts ``POST /api/v2/spans`` and keeps the spans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


class ZipkinReceiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.reports = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 404
        if scope["method"] == "POST" and scope["path"] == "/api/v2/spans":
            self.spans.extend(json.loads(body))
            self.reports += 1
            status = 202
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["traceId"].rjust(32, "0") == trace_id.rjust(32, "0")]

    async def wait_for(
        self, trace_id: str, names: set[str], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """The trace's spans once every name in ``names`` is among them (or on timeout)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            spans = self.trace(trace_id)
            if names <= {s.get("name", "") for s in spans}:
                return spans
            await asyncio.sleep(0.1)
        return self.trace(trace_id)


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[tuple[ZipkinReceiver, int, uvicorn.Server]]:
    receiver = ZipkinReceiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(receiver, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield receiver, port, server
    finally:
        server.should_exit = True
        await task
        sock.close()
