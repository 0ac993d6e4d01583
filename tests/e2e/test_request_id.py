"""End to end: a client's own x-request-id comes back, and reaches the worker, byte for byte.

With tracing on, Envoy's UUID extension would by default rewrite one digit of a UUID id
to pack its trace decision; the listener turns that off (request_id_extension).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.stack import Stack, free_port
from tests.e2e.zipkin_receiver import running_receiver
from ttsgw import components

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=[False, True], ids=["untraced", "traced"]
)
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    if not request.param:
        async with _stack(Path(tmp_path_factory.mktemp("plain")), None) as started:
            yield started
        return
    async with running_receiver() as (_, port, _server):
        url = f"http://127.0.0.1:{port}/api/v2/spans"
        async with _stack(Path(tmp_path_factory.mktemp("traced")), url) as started:
            yield started


class _stack:
    def __init__(self, state_dir: Path, zipkin_url: str | None) -> None:
        self.stack = Stack(state_dir)
        if zipkin_url:
            self.stack.settings = self.stack.settings.model_copy(
                update={"tracing_zipkin_url": zipkin_url, "relay_port": free_port()}
            )

    async def __aenter__(self) -> Stack:
        stack = self.stack
        try:
            stack.settings.state_dir.mkdir(parents=True, exist_ok=True)
            if stack.settings.tracing:
                await stack._start("span-relay", components.span_relay(stack.settings))
            await stack.start_redis()
            await stack.start_control_plane()
            await stack.start_ext_proc()
            await stack._start("espeak", components.espeak_worker(stack.settings))
            await stack.start_envoy()
            await stack.wait_converged()
        except BaseException:
            print(stack.logs())
            await stack.stop()
            raise
        return stack

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.stop()


async def worker_saw(stack: Stack, request_id: str) -> bool:
    log = stack.children["espeak"].log_path
    for _ in range(50):
        if f"request_id={request_id} " in log.read_text(errors="replace"):
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.parametrize("kind", ["uuid", "opaque"])
async def test_client_request_id_comes_back_unchanged(stack: Stack, kind: str) -> None:
    # A version-4 UUID is the form Envoy's extension rewrites (its 15th hex digit).
    request_id = str(uuid.uuid4()) if kind == "uuid" else f"client-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        response = await client.post(
            "/v1/audio/speech",
            headers={"x-request-id": request_id},
            json={"model": "espeak", "input": f"hello {kind}"},
        )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-request-id"] == request_id
    assert await worker_saw(stack, request_id), stack.logs()[-3000:]
