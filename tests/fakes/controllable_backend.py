"""A TEST DOUBLE of a TTS worker whose failure rate and latency are set at runtime.

Rollout and A/B tests need a backend that turns bad on command, which no real engine
does. This one speaks the worker contract minimally: `POST /v1/audio/speech` answers a
fixed 0.1 s silent WAV (no synthesis happens), `GET /v1/audio/voices` lists one voice,
`GET /health` and `GET /ready` answer 200 (503 from /ready while `ready` is off).

`POST /control {"error_rate": 0.2, "latency_ms": 300, "ready": true, "reset": true}`
changes any of those (`reset` zeroes the counts); `GET /control` shows them with the
counts of traffic requests (speech and voices) per path and status. The error rate is
exact, not sampled: with 0.2, requests 5, 10, 15, ... of a run fail, so a test's
arithmetic holds on every run. Injected failures are OpenAI-shaped 500s, which Envoy's
default retry policy (gateway-error, connect-failure, refused-stream) does not retry.

Run it as its own process, the way Envoy meets a real worker:
`python -m tests.fakes.controllable_backend --name canary --port 8200`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import socket
import wave
from collections import Counter
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"
# Names the process that answered, next to Envoy's x-tts-backend (which names the cluster).
NAME_HEADER = "x-test-backend"
SAMPLE_RATE = 24_000


def silent_wav(seconds: float = 0.1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"\x00\x00" * int(SAMPLE_RATE * seconds))
    return buffer.getvalue()


class ControlUpdate(BaseModel):
    """The body of `POST /control`; a field left out keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    latency_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None
    ready: bool | None = None
    reset: bool = False


class Behaviour:
    """What the backend does now, and what it has served since the last reset."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error_rate = 0.0
        self.latency_ms = 0.0
        self.ready = True
        self._reset()

    def _reset(self) -> None:
        self.served = 0
        self.counts: Counter[tuple[str, int]] = Counter()
        # Requests since the error rate last changed: the exact-share schedule restarts.
        self._scheduled = 0

    def update(self, change: ControlUpdate) -> None:
        if change.reset:
            self._reset()
        if change.error_rate is not None and change.error_rate != self.error_rate:
            self.error_rate = change.error_rate
            self._scheduled = 0
        if change.latency_ms is not None:
            self.latency_ms = change.latency_ms
        if change.ready is not None:
            self.ready = change.ready

    def next_fails(self) -> bool:
        """True for exactly floor(n * error_rate) of the first n requests, evenly spread."""
        before = self._scheduled
        self._scheduled += 1
        return math.floor(self._scheduled * self.error_rate) > math.floor(before * self.error_rate)

    def record(self, path: str, status: int) -> None:
        self.served += 1
        self.counts[(path, status)] += 1

    def public(self) -> dict[str, Any]:
        by_path: dict[str, dict[str, int]] = {}
        for (path, status), n in sorted(self.counts.items()):
            by_path.setdefault(path, {})[str(status)] = n
        errors = sum(n for (_, status), n in self.counts.items() if status >= 500)
        return {
            "name": self.name,
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "ready": self.ready,
            "requests": self.served,
            "errors_5xx": errors,
            "by_path": by_path,
        }


def _error(status: int, message: str, code: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def create_app(behaviour: Behaviour) -> FastAPI:
    app = FastAPI(title=f"controllable test backend {behaviour.name}")
    wav = silent_wav()
    voices = {
        "voices": [{"id": "test", "name": "Test voice", "language": "en"}],
        "openai_aliases": {"alloy": "test"},
    }

    async def serve(path: str, answer: Response) -> Response:
        fails = behaviour.next_fails()
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if fails:
            answer = _error(500, f"injected failure ({behaviour.error_rate:.0%})", "injected")
        answer.headers[NAME_HEADER] = behaviour.name
        behaviour.record(path, answer.status_code)
        return answer

    @app.post(SPEECH_PATH)
    async def speech(request: Request) -> Response:
        await request.body()  # read it like a worker would; the content does not matter
        return await serve(SPEECH_PATH, Response(wav, media_type="audio/wav"))

    @app.get(VOICES_PATH)
    async def list_voices() -> Response:
        return await serve(VOICES_PATH, JSONResponse(voices))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if behaviour.ready:
            return JSONResponse({"status": "ready", "engine": "controllable"})
        return JSONResponse({"status": "loading", "engine": "controllable"}, status_code=503)

    @app.get("/control")
    async def show() -> dict[str, Any]:
        return behaviour.public()

    @app.post("/control")
    async def change(update: ControlUpdate) -> dict[str, Any]:
        behaviour.update(update)
        return behaviour.public()

    return app


def create_server(
    name: str, host: str = "127.0.0.1", port: int = 0
) -> tuple[uvicorn.Server, socket.socket, int]:
    """A uvicorn server on a socket bound now (port 0 picks a free one); serve it with
    `server.serve(sockets=[sock])`."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it keep-alive responses stall ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(
        create_app(Behaviour(name)), log_level="warning", access_log=False, lifespan="off"
    )
    return uvicorn.Server(config), sock, int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server, sock, port = create_server(args.name, args.host, args.port)
    print(f"controllable backend {args.name} on {args.host}:{port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
