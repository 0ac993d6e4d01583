"""The ops CLI against a mock admin API (httpx.MockTransport): argument parsing, what is sent,
where the token comes from, and how every kind of failure becomes one stderr line and an
exit code. The real control plane is exercised in tests/integration/test_ops_cli.py."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ttsgw import cli
from ttsgw.ops import arguments
from ttsgw.ops.commands import backends, cache, fleet, models, priority_classes, revisions

URL = "http://admin.test"
MODEL = {
    "name": "espeak",
    "splits": [{"backend": "espeak", "weight": 100}],
    "timeout_s": 60.0,
    "retry_policy": {"retry_on": "5xx", "num_retries": 3, "per_try_timeout_s": 30.0},
    "cache_ttl_s": 3600,
}
WRITE = {"revision": 4, "changed": True, "snapshot_version": "abc"}


class FakeAdmin:
    """Answers canned (status, JSON) per "METHOD /path" and records every request."""

    def __init__(self, routes: dict[str, tuple[int, Any]] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.method} {request.url.path}"
        if key not in self.routes:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": key}})
        status, body = self.routes[key]
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TTSGW_ADMIN_URL", "TTSGW_ADMIN_TOKEN", "TTSGW_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./.ttsgw/admin-token is picked up
    monkeypatch.setenv("TTSGW_ADMIN_URL", URL)


Run = Callable[..., int]


def call(run: Run, argv: list[str], admin: FakeAdmin) -> int:
    return run(argv, transport=admin.transport)


# --- parsing ------------------------------------------------------------------------------


def test_split_parses_backend_and_weight() -> None:
    assert arguments.split("espeak-v2=10") == {"backend": "espeak-v2", "weight": 10}
    # A negative weight is the API's to refuse (422 naming the field), not the parser's.
    assert arguments.split("a=-1") == {"backend": "a", "weight": -1}
    for bad in ("espeak", "=5", "espeak=", "espeak=ten"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"BACKEND=WEIGHT|whole number"):
            arguments.split(bad)


def test_set_split_sends_the_splits_without_waiting(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"PUT /api/v1/models/espeak/splits": (200, WRITE)})
    assert call(models.run, ["set-split", "espeak", "espeak=90", "v2=10"], admin) == 0
    assert json.loads(admin.last.content) == {
        "splits": [{"backend": "espeak", "weight": 90}, {"backend": "v2", "weight": 10}]
    }
    assert "wait" not in admin.last.url.params
    assert capsys.readouterr().out == "revision 4: set splits of espeak (espeak=90, v2=10)\n"


def test_set_split_wait_asks_for_acks_and_prints_the_convergence_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = {**WRITE, "acked": True, "converged_ms": 14.13}
    two_envoys = {"revision": 4, "versions": {}, "nodes": [{}, {}]}
    admin = FakeAdmin(
        {
            "PUT /api/v1/models/espeak/splits": (200, answer),
            "GET /api/v1/fleet": (200, two_envoys),
        }
    )
    argv = ["set-split", "espeak", "espeak=100", "--wait", "--timeout", "5"]
    assert call(models.run, argv, admin) == 0
    write = admin.requests[0]
    assert dict(write.url.params) == {"wait": "acked", "timeout_s": "5.0"}
    assert capsys.readouterr().out == (
        "revision 4: set splits of espeak (espeak=100)\n"
        "converged: all 2 connected Envoys ACKed it in 14.1 ms\n"
    )


def test_a_wait_that_times_out_prints_the_revision_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer = {**WRITE, "acked": False, "converged_ms": None}
    admin = FakeAdmin({"POST /api/v1/revisions/2/restore": (200, answer)})
    assert call(revisions.run, ["restore", "2", "--wait"], admin) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("revision 4: restore revision 2\n")
    assert captured.err == (
        "ttsgw: revision 4 is stored and being pushed, but not every Envoy ACKed it within "
        "30s; see `ttsgw fleet`\n"
    )


@pytest.mark.parametrize(
    "argv",
    [["--json", "show", "espeak"], ["show", "espeak", "--json"], ["show", "--json", "espeak"]],
)
def test_global_options_work_before_and_after_the_action(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin({"GET /api/v1/models/espeak": (200, MODEL)})
    assert call(models.run, argv, admin) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == MODEL
    assert out.startswith('{\n  "name": "espeak"')  # pretty-printed


def test_author_url_and_token_flags_are_sent(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"POST /api/v1/revisions/3/restore": (200, WRITE)})
    argv = ["restore", "3", "--author", "carol", "--token", "t0k", "--admin-url", "http://x:1/"]
    assert call(revisions.run, argv, admin) == 0
    request = admin.last
    assert str(request.url) == "http://x:1/api/v1/revisions/3/restore"
    assert request.headers["x-author"] == "carol"
    assert request.headers["authorization"] == "Bearer t0k"


def test_token_comes_from_flag_then_env_then_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin({"GET /api/v1/backends": (200, {"revision": 1, "backends": []})})
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin-token").write_text("from-file\n")
    monkeypatch.setenv("TTSGW_STATE_DIR", str(state))
    call(backends.run, ["list"], admin)
    assert admin.last.headers["authorization"] == "Bearer from-file"
    monkeypatch.setenv("TTSGW_ADMIN_TOKEN", "from-env")
    call(backends.run, ["list"], admin)
    assert admin.last.headers["authorization"] == "Bearer from-env"
    call(backends.run, ["list", "--token", "from-flag"], admin)
    assert admin.last.headers["authorization"] == "Bearer from-flag"
    monkeypatch.delenv("TTSGW_ADMIN_TOKEN")
    monkeypatch.delenv("TTSGW_STATE_DIR")
    call(backends.run, ["list", "--state-dir", str(state)], admin)
    assert admin.last.headers["authorization"] == "Bearer from-file"
    assert "no backends" in capsys.readouterr().out


def test_names_are_one_path_segment() -> None:
    admin = FakeAdmin()
    call(models.run, ["show", "a/b"], admin)
    assert admin.last.url.raw_path == b"/api/v1/models/a%2Fb"


def test_each_command_calls_its_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin()
    cases: list[tuple[Run, list[str], str]] = [
        (models.run, ["list"], "GET /api/v1/models"),
        (backends.run, ["show", "espeak"], "GET /api/v1/backends/espeak"),
        (revisions.run, ["list", "--limit", "5", "--before", "9"], "GET /api/v1/revisions"),
        (revisions.run, ["show", "2"], "GET /api/v1/revisions/2"),
        (revisions.run, ["diff", "3", "--against", "1"], "GET /api/v1/revisions/3/diff"),
        (fleet.run, [], "GET /api/v1/fleet"),
        (cache.run, ["stats"], "GET /api/v1/cache"),
        (cache.run, ["purge", "--model", "espeak"], "DELETE /api/v1/cache"),
        (priority_classes.run, ["list"], "GET /api/v1/priority-classes"),
        (priority_classes.run, ["add-key", "gold"], "POST /api/v1/priority-classes/gold/keys"),
    ]
    for run, argv, expected in cases:
        call(run, argv, admin)
        assert f"{admin.last.method} {admin.last.url.path}" == expected, argv
    capsys.readouterr()
    params = [dict(r.url.params) for r in admin.requests]
    assert params[2] == {"limit": "5", "before": "9"}
    assert params[4] == {"against": "1"}
    assert params[7] == {"model": "espeak"}


@pytest.mark.parametrize(
    ("run", "argv", "message"),
    [
        (models.run, [], "required: {list,show,set-split}"),
        (models.run, ["set-split", "espeak"], "required: BACKEND=WEIGHT"),
        (models.run, ["set-split", "espeak", "espeak"], "expected BACKEND=WEIGHT"),
        (models.run, ["set-split", "e", "e=1", "--timeout", "0"], "at most 300"),
        (revisions.run, ["show", "zero"], "a revision is a number from 1 up"),
        (revisions.run, ["list", "--bogus"], "unrecognized arguments: --bogus"),
        (cache.run, ["flush"], "invalid choice: 'flush'"),
        (fleet.run, ["extra"], "unrecognized arguments: extra"),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    run: Run, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin()
    assert call(run, argv, admin) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ttsgw ")
    assert message in err
    assert "Traceback" not in err
    assert admin.requests == []


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert call(models.run, ["set-split", "--help"], FakeAdmin()) == 0
    out = capsys.readouterr().out
    assert "BACKEND=WEIGHT" in out and "--wait" in out and "TTSGW_ADMIN_TOKEN" in out


def test_cli_main_dispatches_the_ops_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name in ("models", "backends", "revisions", "fleet", "cache", "priority-classes"):
        assert f"  {name}" in listing
    assert cli.main(["revisions", "--help"]) == 0
    assert "restore" in capsys.readouterr().out


# --- error mapping --------------------------------------------------------------------------


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": None, **extra}}


def test_a_409_is_one_line_with_the_api_message(capsys: pytest.CaptureFixture[str]) -> None:
    message = "model 'espeak' splits traffic to backend 'nope', which does not exist"
    admin = FakeAdmin({"PUT /api/v1/models/espeak/splits": (409, _error("conflict", message))})
    assert call(models.run, ["set-split", "espeak", "nope=1"], admin) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"ttsgw: 409 conflict: {message}\n"


def test_a_422_lists_every_problem_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    details = [
        {"field": "splits.0.weight", "message": "Input should be greater than or equal to 0"},
        {"field": "splits.1.weight", "message": "Input should be less than or equal to 10000"},
    ]
    body = _error(
        "invalid", "splits.0.weight: Input should be greater than or equal to 0", details=details
    )
    admin = FakeAdmin({"PUT /api/v1/models/espeak/splits": (422, body)})
    assert call(models.run, ["set-split", "espeak", "a=-1", "b=99999"], admin) == 1
    assert capsys.readouterr().err == (
        "ttsgw: 422 invalid: splits.0.weight: Input should be greater than or equal to 0; "
        "also splits.1.weight: Input should be less than or equal to 10000\n"
    )


def test_a_401_says_which_token_was_refused_and_where_tokens_come_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin({"GET /api/v1/fleet": (401, _error("unauthorized", "wrong token"))})
    monkeypatch.setenv("TTSGW_ADMIN_TOKEN", "stale")
    assert call(fleet.run, [], admin) == 1
    err = capsys.readouterr().err
    assert err.startswith("ttsgw: 401 unauthorized: the control plane refused the admin token ")
    assert "from TTSGW_ADMIN_TOKEN" in err
    assert "--token, else TTSGW_ADMIN_TOKEN, else STATE_DIR/admin-token" in err
    assert err.count("\n") == 1

    monkeypatch.delenv("TTSGW_ADMIN_TOKEN")
    assert call(fleet.run, [], admin) == 1
    err = capsys.readouterr().err
    assert "no admin token was found" in err and ".ttsgw/admin-token" in err
    assert "authorization" not in admin.last.headers


def test_connection_refused_says_how_to_start_the_control_plane(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    assert models.run(["list"], transport=httpx.MockTransport(refuse)) == 1
    assert capsys.readouterr().err == (
        f"ttsgw: the control plane is not reachable at {URL} (connection refused); start it "
        "with `make up` (or `ttsgw up`), or point --admin-url / TTSGW_ADMIN_URL at a running one\n"
    )


def test_a_timeout_and_a_foreign_server_are_one_line_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    assert models.run(["list"], transport=httpx.MockTransport(slow)) == 1
    assert capsys.readouterr().err == (
        f"ttsgw: the control plane at {URL} did not answer in time (timed out)\n"
    )
    proxy = FakeAdmin({"GET /api/v1/models": (502, "<html><body>Bad\n gateway</body></html>")})
    assert call(models.run, ["list"], proxy) == 1
    assert capsys.readouterr().err == (
        "ttsgw: 502 bad gateway: <html><body>Bad gateway</body></html>\n"
    )
    not_json = FakeAdmin({"GET /api/v1/models": (200, "hello")})
    assert call(models.run, ["list"], not_json) == 1
    assert "with a body that is not JSON" in capsys.readouterr().err


def test_an_unexpected_answer_shape_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = FakeAdmin({"GET /api/v1/models": (200, {"surprise": True})})
    assert call(models.run, ["list"], admin) == 1
    err = capsys.readouterr().err
    assert err == "ttsgw: unexpected error in the CLI: KeyError: 'models'\n"
