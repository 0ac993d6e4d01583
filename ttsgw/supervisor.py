"""A small process supervisor: start, wait for readiness, restart with backoff, stop cleanly.

It does what the source article's watchdog script does (restart a crashed worker),
but with exponential backoff so a component that cannot start does not spin, and with
a log line for every restart so ops can see it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

import httpx

from ttsgw.components import Component

log = logging.getLogger("ttsgw.supervisor")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that stayed up this long is considered healthy again: reset its backoff.
STABLE_AFTER_S = 60.0


async def _is_ready(client: httpx.AsyncClient, url: str) -> bool:
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 1)
            writer.close()
            return answer.startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
    with contextlib.suppress(httpx.HTTPError):
        return (await client.get(url)).status_code == 200
    return False


class ComponentFailed(RuntimeError):
    """A component exited or never became ready during start-up."""


class Supervised:
    """One child process and its restart policy."""

    def __init__(self, component: Component, log_dir: Path) -> None:
        self.component = component
        self.log_path = log_dir / f"{component.name.replace('[', '-').strip(']')}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.component.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=asyncio.subprocess.STDOUT,
                env=self.component.environment(os.environ),
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            )
        finally:
            logfile.close()

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise ComponentFailed(
                        f"{self.component.name} exited with code {self.process.returncode}: "
                        f"{self.last_log_line()} (full log: {self.log_path})"
                    )
                if await _is_ready(client, self.component.ready_url):
                    return
                await asyncio.sleep(0.1)
        raise ComponentFailed(
            f"{self.component.name} was not ready within {timeout:.0f}s: "
            f"{self.last_log_line()} (full log: {self.log_path})"
        )

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][-300:] if lines else "no output"

    async def watch(self, ready_timeout: float) -> None:
        """Restart the process whenever it exits, until stop() is called."""
        backoff = BACKOFF_START_S
        while not self._stopping:
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            if self._stopping:
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff = BACKOFF_START_S
            self.restarts += 1
            log.warning(
                "%s exited with code %s; restart #%d in %.1fs (log: %s)",
                self.component.name,
                code,
                self.restarts,
                backoff,
                self.log_path,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            if self._stopping:
                return
            await self.start()
            try:
                await self.wait_ready(ready_timeout)
                log.info("%s is back (pid %s)", self.component.name, self.pid)
            except ComponentFailed as exc:
                log.warning("%s", exc)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class Supervisor:
    """Starts components in order and keeps them running; stops them in reverse order."""

    def __init__(self, log_dir: Path, ready_timeout: float = 60.0) -> None:
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout
        self.children: list[Supervised] = []
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, component: Component) -> Supervised:
        child = Supervised(component, self.log_dir)
        self.children.append(child)
        await child.start()
        await child.wait_ready(self.ready_timeout)
        log.info("%s ready (pid %s)", component.name, child.pid)
        return child

    def watch(self) -> None:
        self._watchers = [asyncio.create_task(c.watch(self.ready_timeout)) for c in self.children]

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
