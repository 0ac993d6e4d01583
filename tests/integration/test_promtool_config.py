"""deploy/prometheus/prometheus.yml passes `promtool check config` (Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


@pytest.fixture
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (make setup installs Debian's prometheus)")
    return binary


def _check(
    promtool: str, config: dict[str, object], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )


def test_scrape_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    # promtool insists the credentials file exists; compose writes it at start-up.
    token = tmp_path / "admin-token"
    token.write_text("t")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] == "/prometheus/admin-token"
            job["authorization"]["credentials_file"] = str(token)
    out = _check(promtool, config, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_rejects_a_broken_config(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["scrape_configs"][0]["scrape_interval"] = "ten seconds"
    assert _check(promtool, config, tmp_path).returncode != 0


def test_every_compose_component_is_scraped() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    targets = {
        (job.get("metrics_path", "/metrics"), t)
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    assert targets == {
        ("/metrics", "control-plane:9000"),
        ("/metrics", "ext-proc:9102"),
        ("/metrics", "worker-espeak:8101"),
        ("/metrics", "worker-cosyvoice3:8102"),
        ("/stats/prometheus", "envoy:9901"),
    }
