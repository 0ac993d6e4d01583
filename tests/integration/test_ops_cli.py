"""The ops CLI against a real control plane (a subprocess on free ports, started the way
`ttsgw up` starts it) and a real Redis for the cache commands.

No Envoy is connected here, so `--wait` converges at once; tests/integration/
test_ops_cli_fleet.py adds a real Envoy for `ttsgw fleet`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer, free_port
from ttsgw import cli, components
from ttsgw.components import StackSettings
from ttsgw_common.cache.redis_store import RedisCacheStore
from ttsgw_contract.cache import CachedResponse

TOKEN = "ops-cli-test-token"
TTSGW = Path(sys.executable).parent / "ttsgw"


@dataclass
class ControlPlane:
    url: str
    redis_url: str
    log: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def head(self) -> int:
        with self.api() as client:
            return int(client.get("/healthz").json()["revision"])


def _start(settings: StackSettings) -> subprocess.Popen[bytes]:
    component = components.control_plane(settings)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **component.env, "TTSGW_ADMIN_TOKEN": TOKEN}
    with (settings.log_dir / "control-plane.log").open("ab") as log:
        process = subprocess.Popen(
            component.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(component.ready_url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    log_text = (settings.log_dir / "control-plane.log").read_text(errors="replace")
    raise RuntimeError(f"control plane did not become ready:\n{log_text[-3000:]}")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state = tmp_path_factory.mktemp("ops-cli")
    with RedisServer() as redis:
        settings = StackSettings(
            state_dir=state,
            admin_port=free_port(),
            xds_port=free_port(),
            listener_port=free_port(),
            ext_proc_port=free_port(),
            redis_url=redis.url,
        )
        process = _start(settings)
        try:
            yield ControlPlane(
                f"http://127.0.0.1:{settings.admin_port}",
                redis.url,
                settings.log_dir / "control-plane.log",
            )
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, control_plane: ControlPlane) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TTSGW_STATE_DIR", raising=False)
    monkeypatch.setenv("TTSGW_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("TTSGW_ADMIN_URL", control_plane.url)


def ttsgw(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ttsgw_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = ttsgw(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_models_and_backends_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ttsgw(capsys, "models", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SPLITS", "TIMEOUT", "RETRIES", "CACHE", "TTL"]
    assert {line.split()[0] for line in lines[1:]} >= {"cosyvoice3", "espeak"}

    code, out, _ = ttsgw(capsys, "backends", "show", "cosyvoice3")
    assert code == 0
    assert "kind:             cosyvoice3" in out
    assert "health check:     GET /ready every 10s" in out

    backends = ttsgw_json(capsys, "backends", "list")
    assert [b["name"] for b in backends["backends"]] == ["cosyvoice3", "espeak"]
    with httpx.Client() as raw:
        expected = raw.get(
            f"{os.environ['TTSGW_ADMIN_URL']}/api/v1/backends",
            headers={"authorization": f"Bearer {TOKEN}"},
        ).json()
    assert backends == expected


def test_set_split_diff_and_restore_round_trip(
    capsys: pytest.CaptureFixture[str], control_plane: ControlPlane
) -> None:
    ttsgw(capsys, "models", "set-split", "espeak", "espeak=100")  # known start, maybe a no-op
    before = control_plane.head()

    code, out, err = ttsgw(
        capsys,
        "models",
        "set-split",
        "espeak",
        "espeak=90",
        "cosyvoice3=10",
        "--wait",
        "--author",
        "alice",
    )
    assert code == 0, err
    split_rev = before + 1
    assert out.splitlines()[0] == (
        f"revision {split_rev}: set splits of espeak (espeak=90, cosyvoice3=10)"
    )
    assert out.splitlines()[1] == (
        "converged: no Envoy is connected, so there was nothing to wait for"
    )
    assert control_plane.head() == split_rev

    code, out, _ = ttsgw(capsys, "models", "show", "espeak")
    assert "espeak      90      90.0%" in out and "cosyvoice3  10      10.0%" in out

    history = ttsgw_json(capsys, "revisions", "list", "--limit", "2")
    assert history["head"] == split_rev
    newest = history["revisions"][0]
    assert (newest["revision"], newest["author"]) == (split_rev, "alice")
    assert newest["message"] == "set splits of espeak: espeak=90, cosyvoice3=10"

    code, out, _ = ttsgw(capsys, "revisions", "diff", str(split_rev))
    assert out.splitlines() == [
        f"revision {before} -> {split_rev}: 3 changes",
        "~ models.espeak.splits.0.weight: 100 -> 90",
        '+ models.espeak.splits.1.backend: "cosyvoice3"',
        "+ models.espeak.splits.1.weight: 10",
    ]

    code, out, err = ttsgw(capsys, "revisions", "restore", str(before), "--wait")
    assert code == 0, err
    assert out.startswith(f"revision {split_rev + 1}: restore revision {before}\nconverged: ")
    model = ttsgw_json(capsys, "models", "show", "espeak")
    assert model["splits"] == [{"backend": "espeak", "weight": 100}]

    code, out, _ = ttsgw(capsys, "revisions", "diff", str(split_rev + 1), "--against", str(before))
    assert out == f"revision {before} -> {split_rev + 1}: no changes\n"

    shown = ttsgw_json(capsys, "revisions", "show", str(split_rev))
    assert shown["state"]["models"]["espeak"]["splits"][1] == {
        "backend": "cosyvoice3",
        "weight": 10,
    }
    code, out, _ = ttsgw(capsys, "revisions", "show", str(split_rev))
    assert "author:        alice" in out and "espeak      espeak=90, cosyvoice3=10" in out


def test_a_409_and_a_422_exit_1_with_the_message_and_change_nothing(
    capsys: pytest.CaptureFixture[str], control_plane: ControlPlane
) -> None:
    head = control_plane.head()
    code, out, err = ttsgw(capsys, "models", "set-split", "espeak", "missing=5")
    assert (code, out) == (1, "")
    assert err == (
        "ttsgw: 409 conflict: model 'espeak' splits traffic to backend 'missing', which does "
        "not exist; create the backend first\n"
    )
    code, out, err = ttsgw(capsys, "models", "set-split", "espeak", "espeak=0")
    assert (code, out) == (1, "")
    assert err == ("ttsgw: 422 invalid: splits: Value error, at least one weight must be above 0\n")
    code, _, err = ttsgw(capsys, "models", "set-split", "espeak", "espeak=-1", "--json")
    assert code == 1
    assert err.startswith("ttsgw: 422 invalid: splits.0.weight: Input should be greater than")
    code, _, err = ttsgw(capsys, "revisions", "show", "999")
    assert (code, err) == (1, "ttsgw: 404 not_found: revision 999 does not exist\n")
    assert control_plane.head() == head


def test_a_wrong_token_and_the_state_dir_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, err = ttsgw(capsys, "fleet", "--token", "wrong")
    assert (code, out) == (1, "")
    assert err.startswith("ttsgw: 401 unauthorized: the control plane refused the admin token ")
    assert "from --token" in err and "TTSGW_ADMIN_TOKEN" in err

    monkeypatch.delenv("TTSGW_ADMIN_TOKEN")
    state = tmp_path / "stack"
    state.mkdir()
    (state / "admin-token").write_text(TOKEN + "\n")
    code, out, err = ttsgw(capsys, "fleet", "--state-dir", str(state))
    assert code == 0, err
    assert out.rstrip().endswith("no Envoy is connected")


def test_unreachable_control_plane_gets_the_friendly_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = ttsgw(capsys, "models", "list", "--admin-url", url)
    assert (code, out) == (1, "")
    assert err == (
        f"ttsgw: the control plane is not reachable at {url} (connection refused); start it "
        "with `make up` (or `ttsgw up`), or point --admin-url / TTSGW_ADMIN_URL at a running one\n"
    )


def test_fleet_json_parses(capsys: pytest.CaptureFixture[str], control_plane: ControlPlane) -> None:
    fleet = ttsgw_json(capsys, "fleet")
    assert fleet["nodes"] == []
    assert fleet["revision"] == control_plane.head()
    assert set(fleet["versions"]) == {"cds", "eds", "lds", "rds"}


async def _seed_cache(redis_url: str) -> None:
    store = RedisCacheStore(redis_url, op_timeout_s=2.0, connect_timeout_s=2.0)
    try:
        answer = CachedResponse(body=b"RIFF....", content_type="audio/wav", backend="espeak")
        await store.put("ttsgw:cache:v1:espeak:gen1:aaa", answer, 60)
        await store.put("ttsgw:cache:v1:espeak:gen1:bbb", answer, 60)
        await store.put("ttsgw:cache:v1:cosyvoice3:gen1:ccc", answer, 60)
        await store.record("espeak", "hit", 2048)
        await store.record("espeak", "miss")
    finally:
        await store.aclose()


def test_cache_stats_and_purge(
    capsys: pytest.CaptureFixture[str], control_plane: ControlPlane
) -> None:
    asyncio.run(_seed_cache(control_plane.redis_url))
    code, out, err = ttsgw(capsys, "cache", "stats")
    assert code == 0, err
    assert out.splitlines()[1].split() == ["espeak", "1", "1", "0", "50.0%", "2.0", "KiB"]
    assert ttsgw_json(capsys, "cache", "stats")["total"]["hits"] == 1

    code, out, _ = ttsgw(capsys, "cache", "purge", "--model", "espeak")
    assert out == "purged 2 cached answers of model espeak\n"
    code, out, _ = ttsgw(capsys, "cache", "purge")
    assert out == "purged 1 cached answer (all models)\n"


def test_priority_classes_add_key_prints_it_once(
    capsys: pytest.CaptureFixture[str], control_plane: ControlPlane
) -> None:
    with control_plane.api() as api:
        api.put("/api/v1/priority-classes/gold", json={"level": "high"}).raise_for_status()
    code, out, err = ttsgw(capsys, "priority-classes", "add-key", "gold", "--author", "ops")
    assert code == 0, err
    key = out.split("\n\n")[1].strip()
    assert key.startswith("ttsgw-")
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12]
    assert f"fingerprint {fingerprint}" in out

    code, out, _ = ttsgw(capsys, "priority-classes", "list")
    assert key not in out
    row = next(line for line in out.splitlines() if line.startswith("gold"))
    assert row.split()[:4] == ["gold", "high", "unlimited", "1"] and fingerprint in row
    assert (
        ttsgw_json(capsys, "revisions", "list", "--limit", "1")["revisions"][0]["author"] == "ops"
    )


def test_the_installed_ttsgw_script(control_plane: ControlPlane) -> None:
    env = {**os.environ, "TTSGW_ADMIN_TOKEN": TOKEN}
    env.pop("TTSGW_ADMIN_URL", None)
    done = subprocess.run(
        [str(TTSGW), "models", "list", "--admin-url", control_plane.url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "espeak" in {m["name"] for m in json.loads(done.stdout)["models"]}

    down = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(TTSGW), "models", "list", "--admin-url", down],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"ttsgw: the control plane is not reachable at {down}")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
