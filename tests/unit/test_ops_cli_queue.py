"""`ttsgw queue` against a mock admin API: what it asks for and the table it prints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_ops_cli import FakeAdmin, _clean_env, call  # noqa: F401 (autouse fixture)
from tests.unit.test_queue_status import worker_answer
from ttsgw import cli
from ttsgw.ops.commands import queue
from ttsgw.ops.views.queue import queue_view


def aggregate() -> dict[str, Any]:
    live = {"address": "127.0.0.1:8102", "state": "ok", "error": None, "age_s": 0.2}
    dead = {"address": "10.0.0.9:8102", "state": "unreachable", "error": "ConnectError: refused"}
    return {
        "object": "queue.aggregate",
        "revision": 3,
        "poll_interval_s": 1.0,
        "age_s": 0.4,
        "models": {
            "cosyvoice3": {
                "busy": "busy",
                "queued": 2,
                "in_flight": 3,
                "drain_rate_per_s": 4.2,
                "levels": {
                    "high": {"depth": 0, "limit": 64, "fill": 0.0, "estimated_wait_s": 0.0},
                    "default": {
                        "depth": 2,
                        "limit": 64,
                        "fill": 0.031,
                        "estimated_wait_s": 0.476,
                        "oldest_wait_s": 1.5,
                    },
                    "low": {"depth": 0, "limit": 64, "fill": 0.0, "estimated_wait_s": 0.476},
                },
                "endpoints": {"total": 2, "reachable": 1},
                "backends": [
                    {
                        "name": "cosyvoice3",
                        "weight": 100,
                        "endpoints": [{**live, "queue": worker_answer()}, dead],
                    }
                ],
            }
        },
    }


def test_queue_prints_a_table_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"GET /api/v1/queue": (200, aggregate())})
    assert call(queue.run, [], admin) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == (
        "cosyvoice3: busy, 3 in flight, 2 queued, drain 4.2/s, 1/2 endpoints reachable"
    )
    assert lines[1].split() == ["LEVEL", "DEPTH", "LIMIT", "FILL", "EST", "WAIT", "OLDEST"]
    assert lines[3].split() == ["default", "2", "64", "3%", "0.476s", "1.5s"]
    assert "cosyvoice3 10.0.0.9:8102 unreachable: ConnectError: refused" in out
    assert out.rstrip().endswith("polled 0.4s ago")
    assert "model" not in admin.last.url.params


def test_queue_model_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    admin = FakeAdmin({"GET /api/v1/queue": (200, aggregate())})
    assert call(queue.run, ["--model", "cosyvoice3", "--json"], admin) == 0
    assert admin.last.url.params["model"] == "cosyvoice3"
    assert json.loads(capsys.readouterr().out)["models"]["cosyvoice3"]["in_flight"] == 3


def test_an_unknown_model_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    missing = {"error": {"code": "not_found", "message": "no model named 'x'", "field": "model"}}
    admin = FakeAdmin({"GET /api/v1/queue": (404, missing)})
    assert call(queue.run, ["--model", "x"], admin) == 1
    assert capsys.readouterr().err.strip() == "ttsgw: 404 not_found: no model named 'x'"


def test_view_before_the_first_poll_and_without_models() -> None:
    unpolled = {"age_s": None, "models": {"m": {"busy": "unknown", "levels": {}}}}
    text = queue_view(unpolled)
    assert text.startswith("m: unknown, 0 in flight, 0 queued, drain -, 0/0 endpoints reachable")
    assert text.endswith("workers not polled yet")
    assert queue_view({"models": {}}) == "no models are configured"


def test_cli_lists_the_queue_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "queue" in capsys.readouterr().out
