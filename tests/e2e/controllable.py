"""Controllable test backends in an e2e stack: start one as a real process, register it, steer it.

The backend is `tests/fakes/controllable_backend.py`, a test double (silent WAVs, no
synthesis) whose error rate and latency a test sets at runtime. It runs as a child of
the stack, so `stack.stop()` ends it and `stack.logs()` shows its log on failure.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.stack import Stack, free_port
from ttsgw.components import Component
from ttsgw.supervisor import Supervised

# Roomier than the article's 10 pending / 20 requests, so load tests measure the backend's
# behaviour rather than Envoy shedding at the breaker.
ROOMY_BREAKER = {"max_pending_requests": 1000, "max_requests": 1000}


@dataclass
class ControllableBackend:
    """A running controllable backend; `url` is where Envoy (and the test) reach it."""

    name: str
    port: int
    child: Supervised

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def control(self, **change: Any) -> dict[str, Any]:
        """`error_rate`, `latency_ms`, `ready`, `reset`; answers the new state and counts."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.post("/control", json=change)
            response.raise_for_status()
            return dict(response.json())

    async def counts(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.get("/control")
            response.raise_for_status()
            return dict(response.json())


async def start_controllable_backend(stack: Stack, name: str) -> ControllableBackend:
    port = free_port()
    component = Component(
        f"backend-{name}",
        [
            sys.executable,
            "-m",
            "tests.fakes.controllable_backend",
            "--name",
            name,
            "--port",
            str(port),
        ],
        f"http://127.0.0.1:{port}/health",
    )
    child = Supervised(component, stack.settings.log_dir)
    stack.children[f"backend:{name}"] = child
    await child.start()
    await child.wait_ready(30)
    return ControllableBackend(name, port, child)


def backend_spec(backend: ControllableBackend, **overrides: Any) -> dict[str, Any]:
    """The admin API body for it: /ready checked every second, roomy circuit breakers."""
    spec: dict[str, Any] = {
        "kind": "openai-compatible",
        "endpoints": [{"host": "127.0.0.1", "port": backend.port}],
        "health_check": {"path": "/ready", "interval_s": 1, "healthy_threshold": 1},
        "circuit_breakers": {"default": ROOMY_BREAKER, "high": ROOMY_BREAKER},
    }
    return spec | overrides


async def register_backend(
    stack: Stack, backend: ControllableBackend, **overrides: Any
) -> dict[str, Any]:
    """PUT it as a backend of the same name and wait until every Envoy ACKed it."""
    async with stack.admin_client() as admin:
        response = await admin.put(
            f"/api/v1/backends/{backend.name}?wait=acked", json=backend_spec(backend, **overrides)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


async def start_and_register(stack: Stack, name: str, **overrides: Any) -> ControllableBackend:
    backend = await start_controllable_backend(stack, name)
    await register_backend(stack, backend, **overrides)
    return backend
