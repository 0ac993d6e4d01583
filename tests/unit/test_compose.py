"""docker-compose.yml, checked statically (no Docker engine runs here or in CI)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ttsgw.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (make setup installs it)")
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(yaml.safe_load(out.stdout))


def test_compose_has_every_service_of_the_stack(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert services["ext-proc"]["environment"]["TTSGW_REDIS_URL"] == "redis://redis:6379/0"
    assert set(services) >= {"redis"} | {
        "control-plane",
        "ext-proc",
        "worker-espeak",
        "worker-cosyvoice3",
        "envoy",
    }


def test_every_service_runs_a_real_ttsgw_command(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        if name == "redis":
            continue
        command = service["command"]
        first = command[0] if isinstance(command, list) else command.split()[0]
        if name == "envoy":
            assert "ttsgw envoy-bootstrap" in " ".join(command) and "envoy -c" in " ".join(command)
        else:
            assert first in COMMANDS, f"{name} runs unknown command {first!r}"
