"""Tokens and roles: the dataplane token reads only the data path; the admin token does all."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.queue_status import QueuePoller
from control_plane.service import ControlPlane
from control_plane.settings import ControlPlaneSettings
from control_plane.tokens import Tokens
from tests.unit.test_queue_status import FakeFetcher
from ttsgw import components
from ttsgw.components import StackSettings
from ttsgw_contract.roles import Role, allows

ADMIN = "admin-secret"
DATAPLANE = "dataplane-secret"
# What the filter polls; everything else in the API needs the admin role.
Endpoints = list[tuple[str, str]]
DATA_PATH = {("GET", "/api/v1/gateway-config"), ("GET", "/api/v1/queue")}


def test_roles_are_ordered_and_dataplane_is_the_least() -> None:
    assert [r.value for r in Role] == ["dataplane", "viewer", "operator", "admin"]
    assert allows(Role.ADMIN, Role.ADMIN) and allows(Role.ADMIN, Role.DATAPLANE)
    assert allows(Role.VIEWER, Role.DATAPLANE) and not allows(Role.VIEWER, Role.OPERATOR)
    assert not allows(Role.DATAPLANE, Role.VIEWER)
    assert not allows(Role.OPERATOR, Role.ADMIN)


def test_tokens_name_their_role_and_must_differ() -> None:
    tokens = Tokens.of(ADMIN, DATAPLANE)
    assert tokens.role_of(ADMIN) is Role.ADMIN
    assert tokens.role_of(DATAPLANE) is Role.DATAPLANE
    assert tokens.role_of("") is None and tokens.role_of(ADMIN + "x") is None
    assert Tokens.of(ADMIN).role_of(DATAPLANE) is None
    with pytest.raises(ValueError, match="share"):
        Tokens.of("same", "same")
    with pytest.raises(ValueError, match="empty"):
        Tokens.of(ADMIN, "")


@pytest.fixture
async def app_client(cp: ControlPlane) -> AsyncIterator[tuple[httpx.AsyncClient, Endpoints]]:
    poller = QueuePoller(lambda: cp.head.state, FakeFetcher({}))
    app = create_app(
        cp,
        admin_token=ADMIN,
        dataplane_token=DATAPLANE,
        registry=CollectorRegistry(),
        queue_poller=poller,
    )
    # Every documented (method, path), plus the two kept out of the spec.
    paths = app.openapi()["paths"]
    routes = [(m.upper(), path) for path, item in paths.items() for m in item]
    routes += [("GET", "/metrics"), ("GET", "/openapi.json")]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://admin"
    ) as client:
        yield client, routes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_dataplane_token_reads_the_gateway_config_and_the_queue(
    app_client: tuple[httpx.AsyncClient, Endpoints],
) -> None:
    client, _ = app_client
    config = await client.get("/api/v1/gateway-config", headers=bearer(DATAPLANE))
    assert config.status_code == 200 and "espeak" in config.json()["models"]
    queue = await client.get("/api/v1/queue", headers=bearer(DATAPLANE))
    assert queue.status_code == 200
    assert queue.json()["object"] == "queue.aggregate" and "espeak" in queue.json()["models"]
    # The admin token still reads them too.
    assert (await client.get("/api/v1/queue", headers=bearer(ADMIN))).status_code == 200


async def test_a_write_with_the_dataplane_token_is_403_and_changes_nothing(
    cp: ControlPlane, app_client: tuple[httpx.AsyncClient, Endpoints]
) -> None:
    client, _ = app_client
    before = cp.head.number
    body = {"splits": [{"backend": "espeak", "weight": 100}]}
    denied = await client.put(
        "/api/v1/models/cosyvoice3/splits", json=body, headers=bearer(DATAPLANE)
    )
    assert denied.status_code == 403
    assert denied.json()["error"] == {
        "code": "forbidden",
        "message": "this endpoint needs role admin; the token has role dataplane",
        "field": None,
    }
    assert cp.head.number == before
    allowed = await client.put("/api/v1/models/cosyvoice3/splits", json=body, headers=bearer(ADMIN))
    assert allowed.status_code == 200 and cp.head.number == before + 1


async def test_every_other_endpoint_refuses_the_dataplane_token(
    cp: ControlPlane, app_client: tuple[httpx.AsyncClient, Endpoints]
) -> None:
    client, routes = app_client
    before = cp.head.number
    checked = 0
    for method, template in routes:
        if template == "/healthz" or (method, template) in DATA_PATH:
            continue
        # Placeholder path parameters: the role check runs before they are validated.
        path = template.replace("{", "").replace("}", "")
        response = await client.request(method, path, headers=bearer(DATAPLANE), json={})
        assert response.status_code == 403, (method, template, response.text)
        assert "needs role admin" in response.json()["error"]["message"]
        checked += 1
    assert checked > 25  # every router: backends, models, revisions, cache, stats, priority
    assert cp.head.number == before


async def test_a_wrong_or_missing_token_is_still_401(
    app_client: tuple[httpx.AsyncClient, Endpoints],
) -> None:
    client, _ = app_client
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {DATAPLANE}"}):
        response = await client.get("/api/v1/gateway-config", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_the_dataplane_token_is_created_once_in_the_state_dir(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(state_dir=tmp_path)
    token = settings.resolve_dataplane_token()
    path = tmp_path / "dataplane-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.resolve_dataplane_token() == token
    assert token != settings.resolve_admin_token()
    pinned = ControlPlaneSettings(state_dir=tmp_path, dataplane_token="from-env")
    assert pinned.resolve_dataplane_token() == "from-env"


def test_the_filter_ttsgw_up_starts_holds_no_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = StackSettings(state_dir=tmp_path)
    inherited = {**os.environ, "TTSGW_ADMIN_TOKEN": ADMIN, "TTSGW_ADMIN_TOKEN_FILE": "/x"}
    monkeypatch.delenv("TTSGW_DATAPLANE_TOKEN", raising=False)
    spec = components.ext_proc(settings)
    env = spec.environment(inherited)
    assert "TTSGW_ADMIN_TOKEN" not in env and "TTSGW_ADMIN_TOKEN_FILE" not in env
    assert ADMIN not in env.values()
    flag = spec.argv.index("--control-plane-token-file")
    assert spec.argv[flag + 1] == str(tmp_path / "dataplane-token")
    assert "admin-token" not in " ".join(spec.argv)

    monkeypatch.setenv("TTSGW_DATAPLANE_TOKEN", DATAPLANE)
    spec = components.ext_proc(settings)
    env = spec.environment({**inherited, "TTSGW_DATAPLANE_TOKEN": DATAPLANE})
    assert env["TTSGW_CONTROL_PLANE_TOKEN"] == DATAPLANE
    assert "--control-plane-token-file" not in spec.argv
    assert "TTSGW_ADMIN_TOKEN" not in env
    # The control plane, which needs it, still inherits it.
    assert components.control_plane(settings).environment(inherited)["TTSGW_ADMIN_TOKEN"] == ADMIN
