"""A throwaway real redis-server on a free loopback port, for tests that need Redis.

Usage::

    with RedisServer() as redis_server:
        store = RedisCacheStore(redis_server.url)
        redis_server.pause()   # SIGSTOP: connections hang, as on a wedged host
        redis_server.resume()  # SIGCONT
        redis_server.kill()    # SIGKILL: connections are refused
        redis_server.start()   # again, on the same port

Nothing is persisted (``--save ''``, no AOF); the working directory is a temp dir that
``stop()`` removes. Redis's log is kept and shown by ``log()`` for failing tests.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ttsgw.components import free_port

REDIS_SERVER = "redis-server"


def _ping(port: int, timeout_s: float = 0.2) -> bool:
    """True when a Redis on ``port`` answers PING (raw RESP, no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int | None = None, *, start_timeout_s: float = 10.0) -> None:
        if shutil.which(REDIS_SERVER) is None:
            raise RuntimeError(f"{REDIS_SERVER} is not installed (Debian package redis-server)")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._start_timeout_s = start_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="ttsgw-redis-"))
        self._log_path = self._dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start (or restart after ``kill``) and wait until PING answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._dir),
                ],
                cwd=self._dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self._start_timeout_s
        while not _ping(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING in time:\n{self.log()}")
            time.sleep(0.02)
        return self

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        self._proc.send_signal(sig)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing is ever answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL and reap; new connections are then refused."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()  # SIGKILL works on a stopped process too
        self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
