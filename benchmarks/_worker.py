"""Shared by the worker benchmarks: a real synthetic worker process and closed-loop clients."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._harness import free_port
from ttsgw.components import Component
from ttsgw.supervisor import Supervised

SPEECH = "/v1/audio/speech"
# ~8 s of audio per request (0.08 s per character): long enough that batching matters.
TEXT = (
    "The gateway batches speech-token generation across requests, so a busy GPU worker does more."
)
PCM_BYTES_PER_SECOND = 24_000 * 2


@contextlib.asynccontextmanager
async def synthetic_worker(name: str, **settings: object) -> AsyncIterator[str]:
    """`ttsgw worker cosyvoice3 --engine synthetic` with TTSGW_WORKER_* settings; its URL."""
    port = free_port()
    env = {f"TTSGW_WORKER_{k.upper()}": str(v) for k, v in settings.items()}
    argv = [sys.executable, "-m", "ttsgw.cli", "worker", "cosyvoice3", "--engine", "synthetic"]
    argv += ["--port", str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as logs:
        child = Supervised(Component(name, argv, f"{url}/ready", env), Path(logs))
        await child.start()
        try:
            await child.wait_ready(120)
            yield url
        finally:
            await child.stop()


@dataclass
class Outcome:
    status: int
    latency_s: float
    first_byte_s: float
    audio_s: float


async def speak(
    client: httpx.AsyncClient, text: str = TEXT, priority: str | None = None
) -> Outcome:
    """One streamed PCM request: its status, total latency, time to first byte, audio length."""
    headers = {"x-tts-priority": priority} if priority else {}
    body = {"model": "cosyvoice3", "input": text, "voice": "alloy", "response_format": "pcm"}
    started = time.perf_counter()
    first = 0.0
    size = 0
    async with client.stream("POST", SPEECH, json=body, headers=headers) as resp:
        async for piece in resp.aiter_raw():
            if not first:
                first = time.perf_counter() - started
            size += len(piece)
        status = resp.status_code
    audio = size / PCM_BYTES_PER_SECOND if status == 200 else 0.0
    return Outcome(status, time.perf_counter() - started, first, audio)


async def closed_loop(url: str, concurrency: int, seconds: float) -> list[Outcome]:
    """`concurrency` clients, each sending its next request when the last one ends."""
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency + 4)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            outcomes.append(await speak(client))

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return outcomes
