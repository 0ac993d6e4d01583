"""`ttsgw rollout` against a mock admin API (httpx.MockTransport): what is sent, what is shown,
how --follow ends, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from ttsgw import cli
from ttsgw.ops.commands import rollout
from ttsgw.ops.views import rollouts as views

URL = "http://admin.test"
NOW = 1_700_000_000.0
GATES = {"min_success_rate": 0.99, "max_p99_ms": 2000.0, "min_requests": 20, "max_failed_checks": 1}
FIGURES = {
    "cluster": "canary",
    "window_s": 30.0,
    "requests": 120,
    "errors_5xx": 1,
    "success_rate": 119 / 120,
    "p50_ms": 10.0,
    "p95_ms": 30.0,
    "p99_ms": 42.4,
}


def event(eid: int, kind: str, weight: int, message: str, **extra: Any) -> dict[str, Any]:
    base = {"id": eid, "rollout_id": 3, "at": NOW + eid, "kind": kind, "weight": weight}
    return {**base, "step_index": 0, "verdict": None, "figures": None, "revision": None,
            "author": None, "message": message, **extra}  # fmt: skip


def rollout_body(status: str = "running", weight: int = 25, **extra: Any) -> dict[str, Any]:
    return {
        "id": 3,
        "model": "tts",
        "canary": "canary",
        "stable": "stable",
        "status": status,
        "step_index": 1,
        "weight": weight,
        "checks": 2,
        "failed_checks": 0,
        "author": "carol",
        "message": "step 2/4: canary 'canary' 5% → 25% (gates passed)",
        "created_at": NOW,
        "updated_at": NOW + 5,
        "finished_at": None,
        "next_check_at": NOW + 12,
        "last_verdict": "pass",
        "last_figures": FIGURES,
        "steps": [5, 25, 50, 100],
        "interval_s": 30.0,
        "gates": GATES,
        "events": [event(1, "started", 0, "started by carol"), event(2, "advanced", 5, "0% → 5%")],
        "now": NOW,
        **extra,
    }


class FakeAdmin:
    """Canned answers per "METHOD /path"; a list answers its items in turn (the last repeats)."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.method} {request.url.path}"
        if key not in self.routes:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": key}})
        answer = self.routes[key]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        status, body = answer
        return httpx.Response(status, json=body)

    def run(self, argv: list[str]) -> int:
        return rollout.run(argv, transport=httpx.MockTransport(self))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TTSGW_ADMIN_TOKEN", "TTSGW_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TTSGW_ADMIN_URL", URL)


def test_rollout_is_a_ttsgw_command() -> None:
    assert cli.COMMANDS["rollout"][0] == "ttsgw.ops.commands.rollout"


def test_start_sends_only_what_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"POST /api/v1/rollouts": (201, rollout_body(weight=5, step_index=0))})
    argv = ["start", "tts", "--canary", "canary", "--steps", "5,25,50,100", "--interval", "30"]
    assert admin.run([*argv, "--max-p99-ms", "2000", "--max-failed-checks", "0"]) == 0
    assert json.loads(admin.requests[0].content) == {
        "model": "tts",
        "canary": "canary",
        "steps": [5, 25, 50, 100],
        "interval_s": 30.0,
        "gates": {"max_p99_ms": 2000.0, "max_failed_checks": 0},
    }
    out = capsys.readouterr().out
    assert "rollout 3 started: canary 'canary' at 5% of model 'tts' (stable 'stable')" in out
    assert "steps: [5%] → 25% → 50% → 100%" in out
    assert "success ≥ 99.00%, p99 ≤ 2000 ms, ≥ 20 requests per 30s, 1 failed check tolerated" in out
    assert "ttsgw rollout status 3 --follow" in out

    admin = FakeAdmin({"POST /api/v1/rollouts": (201, rollout_body())})
    assert admin.run(["start", "tts", "--canary", "canary"]) == 0
    assert json.loads(admin.requests[0].content) == {"model": "tts", "canary": "canary"}


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "tts"],  # no --canary
        ["start", "tts", "--canary", "c", "--steps", "5,x"],
        ["start", "tts", "--canary", "c", "--steps", ","],
        ["pause", "abc"],
        ["pause", "0"],
        ["status", "--follow"],
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin({})
    assert admin.run(argv) == 2
    assert admin.requests == []
    assert capsys.readouterr().err.strip()


def test_an_api_refusal_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    refusal = {
        "error": {"code": "conflict", "message": "model 'tts' already has an active rollout"}
    }
    admin = FakeAdmin({"POST /api/v1/rollouts": (409, refusal)})
    assert admin.run(["start", "tts", "--canary", "canary"]) == 1
    err = capsys.readouterr().err
    assert err == "ttsgw: 409 conflict: model 'tts' already has an active rollout\n"


def test_status_shows_weight_gates_and_figures(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"GET /api/v1/rollouts/3": (200, rollout_body())})
    assert admin.run(["status", "3"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "status:     running",
        "weight:     25% (step 2/4)",
        "steps:      5% → [25%] → 50% → 100%",
        "gates:      success ≥ 99.00%, p99 ≤ 2000 ms",
        "figures:    120 requests in 30s, 1 5xx, success 99.17%, p50 10 ms, p95 30 ms, p99 42 ms",
        "next check: in 12s",
        "22:13:21  started        0%  started by carol",
    ):
        assert expected in out, (expected, out)
    assert dict(admin.requests[0].url.params) == {"events": "20"}


def test_status_by_model_shows_its_latest_rollout(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin(
        {
            "GET /api/v1/rollouts": (200, {"rollouts": [rollout_body()]}),
            "GET /api/v1/rollouts/3": (200, rollout_body()),
        }
    )
    assert admin.run(["status", "--model", "tts", "--json"]) == 0
    assert dict(admin.requests[0].url.params) == {"model": "tts", "limit": "1"}
    assert json.loads(capsys.readouterr().out)["id"] == 3

    none = FakeAdmin({"GET /api/v1/rollouts": (200, {"rollouts": []})})
    assert none.run(["status", "--model", "tts"]) == 1
    assert "model 'tts' has no rollouts" in capsys.readouterr().err


def test_status_without_an_id_lists_rollouts(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"GET /api/v1/rollouts": (200, {"rollouts": [rollout_body()]})})
    assert admin.run(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID", "MODEL", "STABLE", "CANARY", "STATUS", "WEIGHT", "STEP", "FAILED/CHECKS", "LAST",
        "UPDATED",
    ]  # fmt: skip
    assert lines[1].split()[:9] == ["3", "tts", "stable", "canary", "running", "25%", "2/4", "0/2",
                                    "pass"]  # fmt: skip


def test_follow_prints_events_until_promoted(capsys: pytest.CaptureFixture[str]) -> None:
    check = event(3, "check", 25, "success rate 100.00% over 120 requests", verdict="pass")
    promoted = event(4, "promoted", 100, "'canary' is now the stable backend", revision=9)
    admin = FakeAdmin(
        {
            "GET /api/v1/rollouts/3": [
                (200, rollout_body()),
                (200, rollout_body()),
                (200, rollout_body("promoted", 100, message="'canary' is now stable")),
            ],
            "GET /api/v1/rollouts/3/events": [
                (200, {"rollout": 3, "events": [check]}),
                (200, {"rollout": 3, "events": [promoted]}),
            ],
        }
    )
    assert admin.run(["status", "3", "--follow", "--poll", "0"]) == 0
    out = capsys.readouterr().out
    assert "following (Ctrl-C stops watching, not the rollout)" in out
    assert "check pass    25%  success rate 100.00% over 120 requests" in out
    assert "promoted     100%  'canary' is now the stable backend (revision 9)" in out
    assert out.rstrip().endswith("rollout 3 promoted: 'canary' is now stable")
    polls = [r.url.params.get("after") for r in admin.requests if r.url.path.endswith("/events")]
    assert polls == ["2", "3"]  # each poll asks only for what it has not seen


def test_follow_exits_1_when_the_rollout_is_rolled_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = FakeAdmin(
        {
            "GET /api/v1/rollouts/3": [
                (200, rollout_body()),
                (200, rollout_body("rolled_back", 0, message="rolled back: 2 failed checks")),
            ],
            "GET /api/v1/rollouts/3/events": (200, {"rollout": 3, "events": []}),
        }
    )
    assert admin.run(["status", "3", "--follow", "--poll", "0", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "rolled_back"  # --json: only the final state
    assert captured.err == "ttsgw: rollout 3 ended rolled_back: rolled back: 2 failed checks\n"


@pytest.mark.parametrize(
    ("action", "status"),
    [("pause", "paused"), ("resume", "running"), ("promote", "promoted"), ("abort", "aborted")],
)
def test_manual_actions_post_to_their_endpoint(
    action: str, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = FakeAdmin({f"POST /api/v1/rollouts/3/{action}": (200, rollout_body(status))})
    assert admin.run([action, "3", "--author", "dave"]) == 0
    assert admin.requests[0].headers["x-author"] == "dave"
    assert capsys.readouterr().out.startswith(f"rollout 3 {views_past(action)}: {status}")


def views_past(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "promote": "promoted", "abort": "aborted"}[
        action
    ]


def test_views_handle_missing_figures_and_finished_rollouts() -> None:
    finished = rollout_body("promoted", 100, last_figures=None, next_check_at=None, events=[])
    text = views.rollout_detail(finished)
    assert "figures:    -" in text and "next check: -" in text
    assert "steps:      5% → 25% → 50% → 100%" in text  # no current step once it ended
