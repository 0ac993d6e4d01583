"""How to launch each deployable of the local stack: argv, environment, readiness probe.

Shared by `ttsgw up` and the end-to-end tests, so the tests start the stack exactly the
way users do.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (tests, benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackSettings(BaseSettings):
    """Every port of DESIGN.md §3, overridable by TTSGW_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="TTSGW_", extra="ignore")

    state_dir: Path = Path(".ttsgw")
    listener_port: int = 10000
    envoy_admin_port: int = 9901
    xds_port: int = 18000
    admin_port: int = 9000
    ext_proc_port: int = 18001
    ext_proc_metrics_port: int = 9102
    espeak_port: int = 8101
    cosyvoice3_port: int = 8102
    # Unset: `ttsgw up` runs an embedded redis-server on redis_port, data in the state dir.
    redis_url: str | None = None
    redis_port: int = 6390
    redis_maxmemory: str = "256mb"
    cosyvoice3_engine: str = "synthetic"
    cosyvoice3_model_dir: Path | None = None
    envoy_concurrency: int = 2
    # The real Zipkin kept traces go to (e.g. http://127.0.0.1:9411/api/v2/spans). Set, the
    # stack runs the span relay on relay_port and every component traces through it
    # (docs/tracing.md); unset, tracing is off.
    tracing_zipkin_url: str | None = None
    relay_port: int = 9412

    @classmethod
    def on_free_ports(cls, state_dir: Path, **overrides: object) -> StackSettings:
        """Every port a free one, so several stacks (tests, benchmarks) run side by side."""
        ports = {name: free_port() for name in cls.model_fields if name.endswith("_port")}
        return cls(state_dir=state_dir, **{**ports, **overrides})  # type: ignore[arg-type]

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def dataplane_token_file(self) -> Path:
        """The filter's read-only token; the control plane writes it on its first start."""
        return self.state_dir / "dataplane-token"

    def admin_token(self) -> str:
        """The token the control plane uses: TTSGW_ADMIN_TOKEN, else the one in the state dir."""
        return os.environ.get("TTSGW_ADMIN_TOKEN") or self.token_file.read_text().strip()

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    def ports(self) -> dict[str, int]:
        ports = {
            "Envoy listener": self.listener_port,
            "Envoy admin": self.envoy_admin_port,
            "xDS": self.xds_port,
            "admin API": self.admin_port,
            "gateway filter": self.ext_proc_port,
            "gateway filter metrics": self.ext_proc_metrics_port,
            "espeak worker": self.espeak_port,
            "cosyvoice3 worker": self.cosyvoice3_port,
        }
        if self.embedded_redis:
            ports["embedded Redis"] = self.redis_port
        if self.tracing:
            ports["span relay"] = self.relay_port
        return ports

    @property
    def tracing(self) -> bool:
        return self.tracing_zipkin_url is not None

    @property
    def relay_url(self) -> str:
        return f"http://127.0.0.1:{self.relay_port}/api/v2/spans"

    def tracing_env(self, variable: str) -> dict[str, str]:
        """``variable`` pointing at the relay when tracing is on; nothing otherwise."""
        return {variable: self.relay_url} if self.tracing else {}


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    # An http:// URL that answers 200 once the component is ready, or a tcp:// address
    # that answers a Redis PING.
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    # Inherited variables the child must not see (the filter never holds the admin token).
    drop_env: tuple[str, ...] = ()

    def environment(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """The child's whole environment: ``inherited`` less ``drop_env``, plus ``env``."""
        kept = {k: v for k, v in inherited.items() if k not in self.drop_env}
        return {**kept, **self.env}


ADMIN_TOKEN_ENV = ("TTSGW_ADMIN_TOKEN", "TTSGW_ADMIN_TOKEN_FILE")


def _ttsgw(*args: str) -> list[str]:
    # Run through the interpreter of this venv, so no PATH lookup can pick another ttsgw.
    return [sys.executable, "-m", "ttsgw.cli", *args]


def envoy_binary() -> str | None:
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    return shutil.which("envoy")


def control_plane(s: StackSettings) -> Component:
    return Component(
        "control-plane",
        _ttsgw(
            "control-plane",
            "--state-dir",
            str(s.state_dir),
            "--xds-port",
            str(s.xds_port),
            "--admin-port",
            str(s.admin_port),
            "--listener-port",
            str(s.listener_port),
            "--ext-proc-port",
            str(s.ext_proc_port),
            "--espeak-port",
            str(s.espeak_port),
            "--cosyvoice3-port",
            str(s.cosyvoice3_port),
            "--access-log-path",
            str(s.log_dir / "access.log"),
            *(["--zipkin-collector", f"127.0.0.1:{s.relay_port}"] if s.tracing else []),
        ),
        f"http://127.0.0.1:{s.admin_port}/healthz",
        env={"TTSGW_REDIS_URL": s.effective_redis_url()},
    )


def ext_proc(s: StackSettings) -> Component:
    argv = _ttsgw(
        "ext-proc",
        "--port",
        str(s.ext_proc_port),
        "--control-plane-url",
        f"http://127.0.0.1:{s.admin_port}",
    )
    env = {
        "TTSGW_METRICS_PORT": str(s.ext_proc_metrics_port),
        "TTSGW_REDIS_URL": s.effective_redis_url(),
        **s.tracing_env("TTSGW_ZIPKIN_URL"),
    }
    # Only the read-only dataplane token: the one the control plane was given in
    # TTSGW_DATAPLANE_TOKEN, else the file it wrote.
    dataplane = os.environ.get("TTSGW_DATAPLANE_TOKEN")
    if dataplane:
        env["TTSGW_CONTROL_PLANE_TOKEN"] = dataplane
    else:
        argv += ["--control-plane-token-file", str(s.dataplane_token_file)]
    return Component(
        "ext-proc",
        argv,
        f"http://127.0.0.1:{s.ext_proc_metrics_port}/healthz",
        env=env,
        drop_env=ADMIN_TOKEN_ENV,
    )


def span_relay(s: StackSettings) -> Component:
    """The tail-sampling relay every emitter reports to; only started when tracing is on."""
    argv = _ttsgw("span-relay", "--port", str(s.relay_port))
    if s.tracing_zipkin_url:
        argv += ["--zipkin-url", s.tracing_zipkin_url]
    return Component("span-relay", argv, f"http://127.0.0.1:{s.relay_port}/healthz")


def redis(s: StackSettings) -> Component:
    """The embedded Redis: the response cache, evicted LRU when full, and the voice registry."""
    data = s.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    return Component(
        "redis",
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(s.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--maxmemory",
            s.redis_maxmemory,
            "--maxmemory-policy",
            # Only keys with a TTL (cache entries) are evicted; registered voices have none
            # and must survive a full cache (docs/decisions.md).
            "volatile-lru",
            "--save",
            "300 1",
            "--appendonly",
            "no",
        ],
        f"tcp://127.0.0.1:{s.redis_port}",
    )


def espeak_worker(s: StackSettings) -> Component:
    return Component(
        "worker-espeak",
        _ttsgw("worker", "espeak", "--port", str(s.espeak_port)),
        f"http://127.0.0.1:{s.espeak_port}/ready",
        env=_worker_env(s),
    )


def cosyvoice3_worker(s: StackSettings) -> Component:
    argv = _ttsgw(
        "worker", "cosyvoice3", "--port", str(s.cosyvoice3_port), "--engine", s.cosyvoice3_engine
    )
    if s.cosyvoice3_model_dir is not None:
        argv += ["--model-dir", str(s.cosyvoice3_model_dir)]
    return Component(
        "worker-cosyvoice3",
        argv,
        f"http://127.0.0.1:{s.cosyvoice3_port}/ready",
        env=_worker_env(s),
    )


def _worker_env(s: StackSettings) -> dict[str, str]:
    # Every worker shares the voice registry (POST /v1/voices) in the stack's Redis.
    return {
        **s.tracing_env("TTSGW_WORKER_ZIPKIN_URL"),
        "TTSGW_WORKER_REDIS_URL": s.effective_redis_url(),
    }


def envoy(s: StackSettings, bootstrap: Path, node_id: str = "ttsgw-envoy-1") -> Component:
    binary = envoy_binary() or "envoy"
    return Component(
        f"envoy[{node_id}]",
        [
            binary,
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--concurrency",
            str(s.envoy_concurrency),
            "--log-level",
            "warning",
            # The access log reaches its file within a second, not Envoy's default 10 s:
            # an operator holding a request id looks there first.
            "--file-flush-interval-msec",
            "1000",
        ],
        f"http://127.0.0.1:{s.envoy_admin_port}/ready",
    )


def bootstrap_argv(s: StackSettings, output: Path, node_id: str = "ttsgw-envoy-1") -> list[str]:
    return _ttsgw(
        "envoy-bootstrap",
        "--node-id",
        node_id,
        "--xds-host",
        "127.0.0.1",
        "--xds-port",
        str(s.xds_port),
        "--admin-port",
        str(s.envoy_admin_port),
        "--output",
        str(output),
        # Envoy's default report is every 5 spans: far too many POSTs for the relay (about
        # 0.8 ms each). A quiet Envoy's spans still go out on its 5 s flush timer.
        *(["--zipkin-min-flush-spans", "1000"] if s.tracing else []),
    )
