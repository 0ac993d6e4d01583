"""A real Prometheus (Debian's package) on a free port, for tests that scrape the stack."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import free_port

PROMETHEUS = shutil.which("prometheus")


@contextlib.contextmanager
def running_prometheus(work: Path, config_yaml: str) -> Iterator[str]:
    """Start Prometheus on `config_yaml` with its data in `work`; yields its URL.

    Skips the test when the package is missing; always stops the process.
    """
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus package is not installed (apt-get install prometheus)")
    (work / "prometheus.yml").write_text(config_yaml)
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
