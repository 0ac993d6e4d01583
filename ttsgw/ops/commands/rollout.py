"""`ttsgw rollout`: start a canary rollout, watch it, and pause, resume, promote or abort it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from ttsgw.ops.arguments import Actions, global_options
from ttsgw.ops.client import AdminClient
from ttsgw.ops.errors import OpsError, UsageError
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views import rollouts as views

PROG = "ttsgw rollout"
DESCRIPTION = (
    "Canary rollouts: move a model's traffic to a new backend step by step, checked against "
    "success-rate, latency and traffic gates every interval; promoted when every step passes, "
    "rolled back to 0% when too many checks fail."
)
# What `start` sends only when given; the server's defaults apply otherwise.
GATE_FLAGS = ("min_success_rate", "max_p99_ms", "min_requests", "max_failed_checks")


def steps(text: str) -> list[int]:
    """`5,25,50,100` -> [5, 25, 50, 100]; the API checks the range and the order."""
    try:
        parsed = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parsed = []
    if not parsed:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole percentages like 5,25,50,100, got {text!r}"
        )
    return parsed


def rollout_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a rollout id is a number from 1 up, got {text!r}")
    return int(text)


def start(client: AdminClient, args: argparse.Namespace) -> Output:
    spec: dict[str, Any] = {"model": args.model, "canary": args.canary}
    if args.steps is not None:
        spec["steps"] = args.steps
    if args.interval is not None:
        spec["interval_s"] = args.interval
    gates = {k: getattr(args, k) for k in GATE_FLAGS if getattr(args, k) is not None}
    if gates:
        spec["gates"] = gates
    data = client.start_rollout(spec)
    text = (
        f"rollout {data['id']} started: canary '{data['canary']}' at {data['weight']}% of "
        f"model '{data['model']}' (stable '{data['stable']}')\n"
        f"steps: {views.steps_inline(data['steps'], data['step_index'], data['status'])}\n"
        f"gates: {views.gates_inline(data['gates'], data['interval_s'])}\n"
        f"watch it with `ttsgw rollout status {data['id']} --follow`"
    )
    return Output(data, text)


def status(client: AdminClient, args: argparse.Namespace) -> Output:
    if args.id is None and args.model is None:
        if args.follow:
            raise UsageError("--follow needs a rollout ID or --model", prog=PROG)
        data = client.list_rollouts(limit=args.limit)
        return Output(data, views.rollouts_table(data, time.time()))
    target = args.id if args.id is not None else _latest_of(client, args.model)
    data = client.get_rollout(target, events=args.events)
    if args.follow and data["status"] not in views.TERMINAL:
        data = _follow(client, data, args)
    if not args.follow:
        return Output(data, views.rollout_detail(data))
    problem = None
    if data["status"] != "promoted":
        problem = f"rollout {data['id']} ended {data['status']}: {data.get('message', '')}"
    return Output(data, views.final_line(data), problem)


def _latest_of(client: AdminClient, model: str) -> int:
    found = client.list_rollouts(model=model, limit=1).get("rollouts") or []
    if not found:
        raise OpsError(f"model '{model}' has no rollouts; start one with `{PROG} start`")
    return int(found[0]["id"])


def _follow(client: AdminClient, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Print the detail, then every new event, until the rollout ends; the final state."""
    quiet = global_options(args).json  # scripts get the final JSON only
    if not quiet:
        _say(views.rollout_detail(data) + "\n\nfollowing (Ctrl-C stops watching, not the rollout)")
    last = max((e["id"] for e in data.get("events") or []), default=0)
    while data["status"] not in views.TERMINAL:
        time.sleep(args.poll)
        for event in client.rollout_events(data["id"], after=last).get("events") or []:
            last = max(last, event["id"])
            if not quiet:
                _say(views.event_line(event))
        data = client.get_rollout(data["id"], events=args.events)
    return data


def _say(text: str) -> None:
    print(text, flush=True)
    sys.stdout.flush()


def _action(name: str, past: str) -> Any:
    def handler(client: AdminClient, args: argparse.Namespace) -> Output:
        data = client.rollout_action(args.id, name)
        return Output(data, views.action_result(data, past))

    return handler


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    starter = actions.add("start", start, "start a canary rollout of MODEL to --canary BACKEND")
    starter.add_argument("model", metavar="MODEL")
    starter.add_argument("--canary", required=True, metavar="BACKEND", help="the new backend")
    starter.add_argument(
        "--steps", type=steps, metavar="5,25,50,100", help="canary weights in percent"
    )
    starter.add_argument(
        "--interval", type=float, metavar="SECONDS", help="seconds between checks (default 30)"
    )
    gates = starter.add_argument_group("gates (checked on each interval's canary traffic)")
    gates.add_argument("--min-success-rate", type=float, metavar="RATE", help="e.g. 0.99 (default)")
    gates.add_argument(
        "--max-p99-ms", type=float, metavar="MS", help="p99 latency limit (default: none)"
    )
    gates.add_argument(
        "--min-requests",
        type=int,
        metavar="N",
        help="fewer canary requests per interval hold the rollout (default 20)",
    )
    gates.add_argument(
        "--max-failed-checks",
        type=int,
        metavar="N",
        help="failed checks tolerated; one more rolls back to 0%% (default 1)",
    )

    shower = actions.add("status", status, "list rollouts, or show one (weight, gates, figures)")
    shower.add_argument("id", metavar="ID", nargs="?", type=rollout_id)
    shower.add_argument("--model", metavar="MODEL", help="the latest rollout of MODEL")
    shower.add_argument(
        "--follow", action="store_true", help="print events live until the rollout ends"
    )
    shower.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help="--follow's refresh period"
    )
    shower.add_argument("--events", type=int, default=20, help="recent events shown (default 20)")
    shower.add_argument("--limit", type=int, default=20, help="rollouts listed (default 20)")

    for name, past, help_ in (
        ("pause", "paused", "hold the current weight; no more checks until resumed"),
        ("resume", "resumed", "resume checks at the current weight"),
        ("promote", "promoted", "make the canary the stable backend now"),
        ("abort", "aborted", "send all traffic back to the stable backend and stop"),
    ):
        actions.add(name, _action(name, past), help_).add_argument(
            "id", metavar="ID", type=rollout_id
        )


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
