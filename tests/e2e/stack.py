"""A real local stack on free ports for end-to-end tests, started the way `ttsgw up` starts it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from ttsgw import components
from ttsgw.components import StackSettings, free_port
from ttsgw.supervisor import Supervised

TOKEN = "e2e-admin-token"


@contextlib.asynccontextmanager
async def running_stack(
    state_dir: Path, *, workers: bool = True, envoys: tuple[str, ...] = ("ttsgw-envoy-1",)
) -> AsyncIterator[Stack]:
    """A started stack, stopped afterwards; its logs are printed if it cannot start."""
    stack = Stack(state_dir)
    try:
        await stack.start_all(workers=workers, envoys=envoys)
    except BaseException:
        print(stack.logs())
        await stack.stop()
        raise
    try:
        yield stack
    finally:
        await stack.stop()


class Stack:
    """Control plane, gateway filter, both workers and any number of real Envoys."""

    def __init__(self, state_dir: Path) -> None:
        self.settings = StackSettings.on_free_ports(state_dir, envoy_concurrency=1)
        self.children: dict[str, Supervised] = {}
        self.envoy_admin_ports: dict[str, int] = {}
        # A line per stack, so a run can count how many stacks it started.
        if count_file := os.environ.get("TTSGW_E2E_STACK_COUNT_FILE"):
            with open(count_file, "a") as counts:
                counts.write(f"{state_dir}\n")

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.listener_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.settings.admin_port}"

    async def _start(
        self, key: str, component: components.Component, *, wait: bool = True
    ) -> Supervised:
        # The token goes to each child, not into this process's environment: a stack must
        # not change how a later test (or stack) in the same run behaves. The state dir's
        # token file says the same, for a component that reads it from the state dir.
        if not self.settings.token_file.exists():
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            self.settings.token_file.write_text(TOKEN + "\n")
        env = dict(component.env)
        if "TTSGW_ADMIN_TOKEN" not in component.drop_env:  # the filter holds only its own
            env["TTSGW_ADMIN_TOKEN"] = TOKEN
        child = Supervised(dataclasses.replace(component, env=env), self.settings.log_dir)
        self.children[key] = child
        await child.start()
        if wait:
            await child.wait_ready(60)
        return child

    async def start_redis(self) -> Supervised:
        return await self._start("redis", components.redis(self.settings))

    async def start_control_plane(self) -> Supervised:
        return await self._start("control-plane", components.control_plane(self.settings))

    async def start_ext_proc(self) -> Supervised:
        return await self._start("ext-proc", components.ext_proc(self.settings))

    async def start_workers(self) -> None:
        await asyncio.gather(
            self._start("espeak", components.espeak_worker(self.settings)),
            self._start("cosyvoice3", components.cosyvoice3_worker(self.settings)),
        )

    async def start_envoy(
        self, node_id: str = "ttsgw-envoy-1", *, admin_port: int | None = None, wait: bool = True
    ) -> Supervised:
        settings = self.settings
        if admin_port is not None or node_id in self.envoy_admin_ports:
            settings = settings.model_copy(update={"envoy_admin_port": admin_port or free_port()})
        self.envoy_admin_ports[node_id] = settings.envoy_admin_port
        bootstrap = self.settings.state_dir / f"bootstrap-{node_id}.json"
        subprocess.run(components.bootstrap_argv(settings, bootstrap, node_id), check=True)
        return await self._start(
            f"envoy:{node_id}", components.envoy(settings, bootstrap, node_id), wait=wait
        )

    async def start_all(
        self, *, workers: bool = True, envoys: tuple[str, ...] = ("ttsgw-envoy-1",)
    ) -> None:
        """Everything `ttsgw up` starts; without workers when a test brings its own backends."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.start_redis()
        await self.start_control_plane()
        await self.start_ext_proc()
        if workers:
            await self.start_workers()
        for i, node_id in enumerate(envoys):
            # Each further Envoy needs an admin port of its own; the listener is shared.
            await self.start_envoy(node_id, admin_port=free_port() if i else None)
        await self.wait_converged(nodes=len(envoys))

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        process = self.children[key].process
        assert process is not None
        process.send_signal(sig)

    async def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop(grace=3)

    def logs(self) -> str:
        parts = []
        for key, child in self.children.items():
            try:
                text = child.log_path.read_text(errors="replace")[-3000:]
            except OSError:
                text = "(no log)"
            parts.append(f"===== {key} ({child.log_path}) =====\n{text}")
        return "\n".join(parts)

    # --- admin API helpers -----------------------------------------------------

    def admin_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.admin, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    async def fleet(self) -> dict[str, Any]:
        async with self.admin_client() as client:
            response = await client.get("/api/v1/fleet")
            response.raise_for_status()
            return dict(response.json())

    async def wait_converged(self, nodes: int = 1, timeout: float = 30) -> dict[str, Any]:
        """Until `nodes` Envoys are connected and each ACKed the head on every type."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                fleet = await self.fleet()
            except httpx.HTTPError:
                fleet = {"nodes": [], "versions": {}}
            acked = [
                n
                for n in fleet["nodes"]
                if all(
                    n["types"].get(t, {}).get("acked") == v for t, v in fleet["versions"].items()
                )
            ]
            if len(acked) >= nodes:
                return fleet
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"fleet did not converge: {fleet}")
            await asyncio.sleep(0.1)

    async def envoy_stat(self, name: str, node_id: str = "ttsgw-envoy-1") -> int:
        port = self.envoy_admin_ports[node_id]
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/stats?filter=^{name}$")).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0
