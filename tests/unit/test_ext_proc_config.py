"""The gateway-config client's one-poll contract (through httpx's transport seam) and settings."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.config_client import HttpConfigSource
from gateway.errors import ConfigSourceError, StartupError
from gateway.settings import GatewaySettings

DOC = {"version": "abc", "revision": 3, "models": {"m1": {"backends": ["b1", "b2"]}}}


def _source(handler, **kw) -> HttpConfigSource:
    return HttpConfigSource(
        "http://cp.invalid/", token="t0k", transport=httpx.MockTransport(handler), **kw
    )


async def test_poll_sends_contract_params_and_installs_config():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "after" in request.url.params:
            return httpx.Response(304)
        return httpx.Response(200, json=DOC)

    source = _source(handler, poll_timeout_s=25)
    try:
        assert await source.poll_once() is True
        assert source.ready and source.current().known_models() == ["m1"]
        assert source.current().models["m1"].backends == ("b1", "b2")
        assert await source.poll_once() is False
        first, second = seen
        assert first.url.path == "/api/v1/gateway-config"
        assert dict(first.url.params) == {"timeout_s": "25"}
        assert dict(second.url.params) == {"timeout_s": "25", "after": "abc"}
        assert first.headers["authorization"] == "Bearer t0k"
    finally:
        await source.aclose()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500),
        httpx.Response(401),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"models": {}}),  # no version
        httpx.Response(200, json={"version": "v", "models": {"m": {"backends": 5}}}),
    ],
)
async def test_bad_answers_raise_and_keep_nothing(response):
    source = _source(lambda request: response)
    try:
        with pytest.raises(ConfigSourceError):
            await source.poll_once()
        assert source.current() is None and not source.ready
    finally:
        await source.aclose()


async def test_resent_version_is_a_contract_violation():
    source = _source(lambda request: httpx.Response(200, content=json.dumps(DOC).encode()))
    try:
        await source.poll_once()
        with pytest.raises(ConfigSourceError, match="resent version"):
            await source.poll_once()
        assert source.current().version == "abc"
    finally:
        await source.aclose()


def test_settings_from_env_and_token_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TTSGW_EXT_PROC_PORT", "19999")
    monkeypatch.setenv("TTSGW_CONTROL_PLANE_TOKEN", "inline")
    settings = GatewaySettings()
    assert (settings.ext_proc_host, settings.ext_proc_port) == ("0.0.0.0", 19999)
    assert settings.metrics_port == 9102
    assert settings.control_plane_url == "http://127.0.0.1:9000"
    assert settings.resolved_control_plane_token() == "inline"
    token = tmp_path / "token"
    token.write_text("from-file\n")
    from_file = GatewaySettings(control_plane_token_file=token)
    assert from_file.resolved_control_plane_token() == "from-file"
    with pytest.raises(StartupError):
        GatewaySettings(
            control_plane_token_file=tmp_path / "missing"
        ).resolved_control_plane_token()


def test_the_filter_never_reads_the_admin_token(monkeypatch):
    """An admin token left in the filter's environment is not what it polls with."""
    monkeypatch.setenv("TTSGW_ADMIN_TOKEN", "admin-secret")
    monkeypatch.delenv("TTSGW_CONTROL_PLANE_TOKEN", raising=False)
    assert GatewaySettings().resolved_control_plane_token() is None
