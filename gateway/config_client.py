"""Where the filter learns the model list: the control plane's versioned gateway-config.

The contract (the control plane implements the server side):

    GET {control_plane_url}/api/v1/gateway-config?after=<version>&timeout_s=<n>
    Authorization: Bearer <dataplane token>   (read-only; ttsgw_contract/roles.py)

    200 {"version": "<opaque>", "revision": <int>,
         "models": {"<name>": {"backends": [...], "cache_ttl_s": 3600, "cache_generation": "…",
                               "clones_voices": true}},
         "voices": {"default_model": "<name> | null"},
         "limits": {"max_input_chars": 4096, "max_prompt_audio_bytes": …,
                    "max_prompt_audio_seconds": 30.0, "min_speed": 0.25, "max_speed": 4.0},
         "cache": {"enabled": true, "max_entry_bytes": 8388608}}
        at once when the current version differs from ``after`` (or ``after`` is absent);
    304 (no body) when nothing changed within ``timeout_s`` seconds (long polling).

Unknown fields are ignored and every newer field has a default, so the control plane
can grow the document (API keys, priorities) before every filter understands it, and a
filter still works against an older control plane (no cache TTLs: nothing is cached).

A filter that cannot reach the control plane keeps routing with its last good copy;
Envoy keeps serving either way, so an outage of the control plane is never an outage of
the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Protocol

import httpx
from pydantic import ValidationError

from gateway.errors import ConfigSourceError
from ttsgw_common.bearer_poller import PollTask, bearer_client
from ttsgw_contract.gateway_config import CONFIG_PATH, GatewayConfig, ModelRoute

log = logging.getLogger(__name__)


class GatewayConfigSource(Protocol):
    """What the processors read; ``current()`` is cheap and never blocks."""

    @property
    def ready(self) -> bool:
        """True once a first config has been received."""
        ...

    def current(self) -> GatewayConfig | None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class StaticConfigSource:
    """An in-memory source for tests and fixed deployments; ``set()`` swaps the config."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self._config = config

    @classmethod
    def of_models(cls, *names: str, version: str = "static") -> StaticConfigSource:
        return cls(GatewayConfig(version=version, models={n: ModelRoute() for n in names}))

    @property
    def ready(self) -> bool:
        return self._config is not None

    def current(self) -> GatewayConfig | None:
        return self._config

    def set(self, config: GatewayConfig | None) -> None:
        self._config = config

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class HttpConfigSource:
    """Long-polls the control plane and keeps the last good config through outages."""

    def __init__(
        self,
        control_plane_url: str,
        *,
        token: str | None = None,
        poll_timeout_s: float = 30.0,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # The read timeout must outlast the server's hold, or every quiet poll is an error.
        timeout = httpx.Timeout(5.0, read=poll_timeout_s + 10.0)
        self._client = bearer_client(
            control_plane_url, token=token, timeout=timeout, transport=transport
        )
        self._poll_timeout_s = poll_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._config: GatewayConfig | None = None
        self._ready = asyncio.Event()
        self._task = PollTask("gateway-config-poll")

    @property
    def ready(self) -> bool:
        return self._config is not None

    def current(self) -> GatewayConfig | None:
        return self._config

    async def wait_ready(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        self._task.start(self._poll_forever)

    async def aclose(self) -> None:
        await self._task.aclose()
        await self._client.aclose()

    async def __aenter__(self) -> HttpConfigSource:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def poll_once(self) -> bool:
        """One request to the control plane; True when a new version was installed."""
        params: dict[str, str] = {"timeout_s": _format_seconds(self._poll_timeout_s)}
        if self._config is not None:
            params["after"] = self._config.version
        try:
            response = await self._client.get(CONFIG_PATH, params=params)
        except httpx.HTTPError as exc:
            raise ConfigSourceError(f"control plane unreachable: {exc!r}") from exc
        if response.status_code == 304:
            return False
        if response.status_code != 200:
            raise ConfigSourceError(f"control plane answered HTTP {response.status_code}")
        try:
            config = GatewayConfig.model_validate_json(response.content)
        except ValidationError as exc:
            raise ConfigSourceError(
                f"control plane sent an invalid gateway-config: {exc.errors()[:1]}"
            ) from exc
        if self._config is not None and config.version == self._config.version:
            # A contract violation (it should have held the poll or answered 304); treat
            # it as an error so the retry backoff stops a hot loop against it.
            raise ConfigSourceError(f"control plane resent version {config.version!r}")
        self._install(config)
        return True

    def _install(self, config: GatewayConfig) -> None:
        self._config = config
        self._ready.set()
        log.info(
            "gateway-config version %s (revision %d): %d models",
            config.version,
            config.revision,
            len(config.models),
        )

    async def _poll_forever(self) -> None:
        delay = self._retry_initial_s
        failing = False
        while True:
            try:
                await self.poll_once()
            except ConfigSourceError as exc:
                if not failing:
                    # Once per outage: a control plane that is down for an hour must not
                    # write thousands of identical lines.
                    log.warning("%s; keeping the last good config, retrying", exc)
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if failing:
                log.info("control plane reachable again")
                failing = False
            delay = self._retry_initial_s


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
