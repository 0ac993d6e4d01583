"""The worker entry point: settings from flags and env, lazy engines, clean startup failures."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tts_backends.engines.espeak import EspeakEngine
from tts_backends.errors import EngineLoadError, PortInUseError
from tts_backends.main import build_engine, parse_settings
from tts_backends.server import bind_socket
from tts_backends.settings import WorkerSettings

TORCH_FREE_CHECK = """
import sys
import tts_backends.app, tts_backends.engines.espeak, tts_backends.main, tts_backends.server
from tts_backends.main import build_engine
from tts_backends.settings import WorkerSettings
engine = build_engine(WorkerSettings(kind="espeak"))
assert engine.name == "espeak"
print("torch" in sys.modules)
"""


def test_http_layer_and_espeak_worker_never_import_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_CHECK], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_defaults_per_worker_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TTSGW_WORKER_PORT", "TTSGW_WORKER_ENGINE", "TTSGW_WORKER_KIND"):
        monkeypatch.delenv(key, raising=False)
    espeak = WorkerSettings(kind="espeak")
    assert (espeak.engine_name, espeak.listen_port, espeak.host) == ("espeak", 8101, "127.0.0.1")
    cosy = WorkerSettings(kind="cosyvoice3")
    assert (cosy.engine_name, cosy.listen_port) == ("synthetic", 8102)


def test_env_sets_options_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTSGW_WORKER_PORT", "9555")
    monkeypatch.setenv("TTSGW_WORKER_DEVICE", "cuda")
    monkeypatch.setenv("TTSGW_WORKER_VOICES_DIR", "/tmp/voices")
    assert WorkerSettings(kind="cosyvoice3").listen_port == 9555
    s = parse_settings(["cosyvoice3", "--port", "9600", "--engine", "synthetic"])
    assert (s.listen_port, s.device, str(s.voices_dir), s.engine_name) == (
        9600,
        "cuda",
        "/tmp/voices",
        "synthetic",
    )


def test_cosyvoice3_engine_needs_a_model_dir() -> None:
    with pytest.raises(Exception, match="--model-dir"):
        build_engine(WorkerSettings(kind="cosyvoice3", engine="cosyvoice3"))


def test_bind_reports_a_taken_port() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(PortInUseError, match="already in use"):
            bind_socket("127.0.0.1", holder.getsockname()[1])
    finally:
        holder.close()


def test_taken_port_exits_2_with_one_line() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "tts_backends.main", "espeak", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"ttsgw worker: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_bad_flag_value_exits_2_without_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tts_backends.main", "espeak", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "port" in out.stderr


def test_missing_espeak_binary_exits_1_with_the_install_hint() -> None:
    env = {"PATH": "/nonexistent", "TTSGW_WORKER_LOG_LEVEL": "warning"}
    out = subprocess.run(
        [sys.executable, "-m", "tts_backends.main", "espeak", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ttsgw worker: engine espeak failed to load:")
    assert "apt-get install espeak-ng" in last
    assert out.stderr.count("apt-get install") == 1


async def test_missing_espeak_binary_says_how_to_install() -> None:
    with pytest.raises(EngineLoadError) as info:
        await EspeakEngine(binary="espeak-ng-not-installed").load()
    assert "apt-get install espeak-ng" in info.value.message
    assert "\n" not in info.value.message
