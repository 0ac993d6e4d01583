"""The `ttsgw` command: a thin dispatcher over each deployable's testable `run(argv)`."""

from __future__ import annotations

import importlib
import sys

# Subcommand -> module with `run(argv) -> int`. Imported lazily so `ttsgw worker espeak`
# never pays for (or needs) torch, and the control plane never imports worker code.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("ttsgw.stack", "start the whole local stack and supervise it"),
    "control-plane": ("control_plane.main", "xDS server and admin API"),
    "ext-proc": ("gateway.main", "the gateway filter (Envoy ext_proc)"),
    "worker": ("tts_backends.main", "a TTS worker: espeak | cosyvoice3"),
    "envoy-bootstrap": ("control_plane.bootstrap", "print Envoy's bootstrap JSON"),
    "span-relay": ("ttsgw_common.telemetry.main", "tail-sampling Zipkin span relay"),
    "models": ("ttsgw.ops.commands.models", "list, show and re-weight public models"),
    "backends": ("ttsgw.ops.commands.backends", "list and show backends"),
    "revisions": ("ttsgw.ops.commands.revisions", "list, show, diff and restore revisions"),
    "fleet": ("ttsgw.ops.commands.fleet", "connected Envoys, their ACKs and NACKs"),
    "cache": ("ttsgw.ops.commands.cache", "response cache stats and purge"),
    "queue": ("ttsgw.ops.commands.queue", "worker queues per model: depth, wait, in-flight"),
    "priority-classes": ("ttsgw.ops.commands.priority_classes", "API-key classes; add a key"),
    "rollout": ("ttsgw.ops.commands.rollout", "canary rollouts: start, status, pause, promote"),
}

USAGE = "usage: ttsgw COMMAND [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<18} {help_}" for name, (_, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"ttsgw: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
