"""A snapshot's version must survive a restart: same state, same hash, in any process."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from control_plane.domain import default_state
from control_plane.translator import translate
from control_plane.xds.snapshot import Snapshot
print(Snapshot.build(translate(default_state())).version)
"""


def _version(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_snapshot_version_is_stable_across_processes() -> None:
    # Different hash seeds reorder dicts and protobuf maps; the hash must not notice.
    versions = {_version(seed) for seed in ("1", "2", "3")}
    assert len(versions) == 1, versions
