"""The shared bearer client and poll task: the header, no proxy, one task, cancelled on close."""

from __future__ import annotations

import asyncio

import httpx

from ttsgw_common.bearer_poller import PollTask, bearer_client


async def test_the_client_sends_the_token_only_when_there_is_one() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    async with bearer_client("http://cp/", token="t0k", timeout=1.0, transport=transport) as c:
        await c.get("/api/v1/queue")
        assert str(c.base_url) == "http://cp"
        assert not c.trust_env
    async with bearer_client(timeout=1.0, transport=transport) as c:
        await c.get("http://worker/v1/queue")
    assert seen == ["Bearer t0k", None]


async def test_the_task_starts_once_and_close_cancels_it() -> None:
    runs = 0
    cancelled = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = PollTask("test-poll")
    task.start(loop)
    task.start(loop)
    await asyncio.sleep(0)
    assert task.running and runs == 1
    await task.aclose()
    assert cancelled.is_set() and not task.running
    await task.aclose()  # closing twice is harmless
