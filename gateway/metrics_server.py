"""A tiny asyncio HTTP listener for ``/metrics``, ``/healthz`` and ``/readyz`` of the filter.

Plain asyncio rather than prometheus_client's threaded server, because that one answers
every path with metrics (no real /healthz) and lives outside the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.config_client import GatewayConfigSource
from gateway.errors import StartupError

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, config_source: GatewayConfigSource) -> None:
        self._registry = registry
        self._config_source = config_source
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port (any free one if ``port`` is 0)."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} for metrics: {exc.strerror}"
            ) from exc
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _health(self) -> tuple[int, bytes]:
        config = self._config_source.current()
        body = {
            "status": "ok",
            "config_ready": config is not None,
            "config_version": config.version if config else None,
            "config_revision": config.revision if config else None,
        }
        return 200, json.dumps(body).encode()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            # Alive whenever this answers: without a config the filter fails open, so it
            # is still safe to keep Envoy pointed at it.
            status, body = self._health()
            return status, "application/json", body
        if path == "/readyz":
            status = 200 if self._config_source.ready else 503
            return status, "application/json", self._health()[1]
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            status, content_type, body = self._route(method, target.split("?", 1)[0])
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                    f"Content-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode("latin-1")
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
