"""The long-polling config client against a real HTTP control plane on an ephemeral port."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, Response

from gateway.config_client import HttpConfigSource

TOKEN = "test-admin-token"


class FakeControlPlane:
    """Implements the gateway-config contract: 200 on a new version, 304 after a held poll."""

    def __init__(self) -> None:
        self.version = "v1"
        self.revision = 1
        self.models: dict[str, Any] = {"espeak": {"backends": ["espeak"]}}
        self.garbage = False
        self.requests: list[tuple[str | None, int]] = []
        self._changed = asyncio.Event()
        self.app = FastAPI()
        self.app.add_api_route("/api/v1/gateway-config", self.gateway_config, methods=["GET"])

    def publish(self, models: dict[str, Any]) -> None:
        self.revision += 1
        self.version = f"v{self.revision}"
        self.models = models
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def gateway_config(
        self,
        after: str | None = None,
        timeout_s: float = 30.0,
        authorization: str | None = Header(default=None),
    ) -> Any:
        if authorization != f"Bearer {TOKEN}":
            return Response(status_code=401)
        if after == self.version:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                self.requests.append((after, 304))
                return Response(status_code=304)
        self.requests.append((after, 200))
        if self.garbage:
            return Response(b"<html>oops</html>", media_type="text/html")
        return {
            "version": self.version,
            "revision": self.revision,
            "models": self.models,
            "some_future_field": {"ignored": True},
        }


class RunningServer:
    def __init__(self, app: FastAPI, port: int = 0) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=0.5,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self.task = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert not self.task.done(), "uvicorn exited during start"
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task


async def wait_for(predicate, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def control_plane():
    plane = FakeControlPlane()
    server = RunningServer(plane.app)
    port = await server.start()
    plane.url = f"http://127.0.0.1:{port}"
    plane.port = port
    plane.server = server
    yield plane
    if not server.server.should_exit:
        await server.stop()


def _source(url: str, **kw: Any) -> HttpConfigSource:
    kw.setdefault("poll_timeout_s", 2.0)
    kw.setdefault("retry_initial_s", 0.05)
    kw.setdefault("retry_max_s", 0.3)
    return HttpConfigSource(url, token=TOKEN, **kw)


async def test_first_config_then_a_new_model_within_a_second(control_plane):
    async with _source(control_plane.url) as source:
        assert await source.wait_ready(5)
        assert source.ready
        config = source.current()
        assert config is not None
        assert (config.version, config.revision, config.known_models()) == ("v1", 1, ["espeak"])
        assert config.models["espeak"].backends == ("espeak",)
        # Let the client settle into a held long poll before the change.
        await wait_for(lambda: control_plane.requests == [(None, 200)])
        await asyncio.sleep(0.2)

        control_plane.publish({"espeak": {"backends": ["espeak"]}, "m2": {"backends": ["b"]}})
        took = await wait_for(lambda: "m2" in source.current().models, timeout=1.0)
        assert took < 1.0
        assert source.current().version == "v2"
        assert ("v1", 200) in control_plane.requests


async def test_quiet_polls_get_304_and_keep_the_config(control_plane):
    async with _source(control_plane.url, poll_timeout_s=0.2) as source:
        assert await source.wait_ready(5)
        first = source.current()
        await wait_for(lambda: sum(1 for _, s in control_plane.requests if s == 304) >= 3)
        assert source.current() is first
        assert all(after == "v1" for after, s in control_plane.requests if s == 304)


async def test_keeps_last_good_copy_while_down_and_recovers(control_plane, caplog):
    caplog.set_level(logging.INFO, logger="gateway.config_client")
    async with _source(control_plane.url) as source:
        assert await source.wait_ready(5)
        good = source.current()

        await control_plane.server.stop()
        await asyncio.sleep(1.5)  # several retries against a closed port
        assert source.ready and source.current() is good
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one log line per outage, not per retry"
        assert "keeping the last good config" in warnings[0].getMessage()

        control_plane.publish({"m3": {"backends": ["b"]}})
        restarted = RunningServer(control_plane.app, port=control_plane.port)
        await restarted.start()
        try:
            await wait_for(lambda: "m3" in source.current().models, timeout=3.0)
            assert "control plane reachable again" in caplog.text
        finally:
            await restarted.stop()


async def test_garbage_answer_keeps_last_good_copy(control_plane):
    async with _source(control_plane.url) as source:
        assert await source.wait_ready(5)
        good = source.current()
        control_plane.garbage = True
        control_plane.publish({"m4": {"backends": []}})
        await wait_for(lambda: ("v1", 200) in control_plane.requests)
        await asyncio.sleep(0.3)
        assert source.current() is good
        control_plane.garbage = False
        await wait_for(lambda: "m4" in source.current().models, timeout=3.0)


async def test_wrong_token_is_never_ready(control_plane):
    source = HttpConfigSource(control_plane.url, token="wrong", retry_max_s=0.1)
    async with source:
        assert not await source.wait_ready(0.5)
        assert source.current() is None and not source.ready
