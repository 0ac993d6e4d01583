"""The real Envoy binary accepts what the translator and the bootstrap produce, and serves it.

The translated resources normally arrive over ADS; here they are folded into a static
bootstrap (EDS clusters get their assignment inline, RDS becomes an inline route_config)
so `envoy --mode validate` checks every field with Envoy's own validation, and one real
Envoy can route traffic without a control plane.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from control_plane.bootstrap import BootstrapOptions, render_bootstrap
from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelSpec,
    PriorityClassSpec,
    Split,
    default_state,
)
from control_plane.translator import TranslatorOptions, translate
from control_plane.xds.resources import Resources
from ttsgw.components import free_port

pytestmark = pytest.mark.e2e

ENVOY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy"
HCM = "envoy.filters.network.http_connection_manager"


def static_bootstrap(resources: Resources, admin_port: int = 0) -> dict[str, Any]:
    """Fold ADS resources into one static bootstrap Envoy can load from a file."""
    assignments = {
        cla.cluster_name: MessageToDict(cla, preserving_proto_field_name=True)
        for cla in resources.endpoints
    }
    clusters = []
    for cluster in resources.clusters:
        c = MessageToDict(cluster, preserving_proto_field_name=True)
        if c.get("type") == "EDS":
            c.pop("eds_cluster_config")
            c["type"] = "STATIC"
            c["load_assignment"] = assignments[c["name"]]
        clusters.append(c)
    routes = {
        rc.name: MessageToDict(rc, preserving_proto_field_name=True) for rc in resources.routes
    }
    listeners = []
    for listener in resources.listeners:
        lst = MessageToDict(listener, preserving_proto_field_name=True)
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    rds = f["typed_config"].pop("rds")
                    f["typed_config"]["route_config"] = routes[rds["route_config_name"]]
        listeners.append(lst)
    return {
        "node": {"id": "ttsgw-test", "cluster": "ttsgw"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {"clusters": clusters, "listeners": listeners},
    }


def envoy_validate(config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [str(ENVOY), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def big_state(models: int = 50) -> DesiredState:
    backends = {}
    for i in range(20):
        if i % 2:
            endpoints = [Endpoint(host=f"10.0.{i}.{j}", port=8000 + j) for j in range(1, 4)]
        else:
            # A DNS name anywhere makes the backend STRICT_DNS with an inline assignment.
            endpoints = [Endpoint(host="127.0.0.1", port=8100), Endpoint(host=f"tts-{i}", port=80)]
        backends[f"backend-{i:02d}"] = BackendSpec(endpoints=endpoints)
    model_specs = {
        f"model-{m:03d}": ModelSpec(
            splits=[
                Split(backend=f"backend-{m % 20:02d}", weight=90),
                Split(backend=f"backend-{(m + 1) % 20:02d}", weight=10),
                Split(backend=f"backend-{(m + 2) % 20:02d}", weight=0),
            ]
        )
        for m in range(models)
    }
    return DesiredState(backends=backends, models=model_specs, default_model="model-007")


def test_default_state_validates(tmp_path: Path) -> None:
    envoy_validate(static_bootstrap(translate(default_state(), TranslatorOptions())), tmp_path)


def test_big_mixed_state_validates(tmp_path: Path) -> None:
    resources = translate(big_state(), TranslatorOptions())
    assert len(resources.endpoints) == 10  # the IP-only half goes through EDS
    envoy_validate(static_bootstrap(resources), tmp_path)


def test_priority_routes_validate(tmp_path: Path) -> None:
    state = default_state().model_copy(
        update={"priority_classes": {"gold": PriorityClassSpec(level="high")}}
    )
    resources = translate(state, TranslatorOptions(route_secret="s3cret"))
    names = [r.name for r in resources.routes[0].virtual_hosts[0].routes]
    assert names.index("model:espeak:high") == names.index("model:espeak") - 1
    envoy_validate(static_bootstrap(resources), tmp_path)


def sticky_state(a: Endpoint, b: Endpoint) -> DesiredState:
    return DesiredState(
        backends={"a": BackendSpec(endpoints=[a]), "b": BackendSpec(endpoints=[b])},
        models={
            "m": ModelSpec(
                splits=[Split(backend="a", weight=70), Split(backend="b", weight=30)],
                sticky_header="x-user-id",
            )
        },
        priority_classes={"gold": PriorityClassSpec(level="high")},
    )


def test_sticky_split_validates(tmp_path: Path) -> None:
    local = Endpoint(host="127.0.0.1", port=9)
    envoy_validate(
        static_bootstrap(translate(sticky_state(local, local), TranslatorOptions())), tmp_path
    )


def test_models_list_over_4k_validates(tmp_path: Path) -> None:
    # Envoy refuses a direct_response body over its 4 KiB default unless the cap is raised.
    resources = translate(big_state(models=300), TranslatorOptions())
    models_route = resources.routes[0].virtual_hosts[0].routes[0]
    assert len(models_route.direct_response.body.inline_string) > 4096
    envoy_validate(static_bootstrap(resources), tmp_path)


@pytest.mark.parametrize(
    "opts",
    [
        BootstrapOptions(),
        BootstrapOptions(xds_host="control-plane", node_id="edge-7", admin_port=0),
    ],
    ids=["ip", "dns"],
)
def test_bootstrap_validates(opts: BootstrapOptions, tmp_path: Path) -> None:
    envoy_validate(render_bootstrap(opts), tmp_path)


# --- real traffic -------------------------------------------------------------------


class _NamedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "server": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "model": self.headers.get("x-tts-model"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _NamedServer(ThreadingHTTPServer):
    """A backend stand-in that answers every request with its own name."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _NamedHandler)
        self.name = name


@contextlib.contextmanager
def named_server(name: str) -> Iterator[int]:
    server = _NamedServer(name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def running_envoy(config: dict[str, Any], workdir: Path) -> Iterator[int]:
    """Start Envoy, wait until /ready, yield its admin port, always stop it."""
    cfg, admin_path, log = workdir / "envoy.json", workdir / "admin.addr", workdir / "envoy.log"
    cfg.write_text(json.dumps(config))
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [
                str(ENVOY),
                "-c",
                str(cfg),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--admin-address-path",
                str(admin_path),
                "--file-flush-interval-msec",
                "50",
                "-l",
                "warning",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        admin_port = _wait_ready(proc, admin_path, log)
        yield admin_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], admin_path: Path, log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"envoy exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if admin_path.exists() and admin_path.read_text().strip():
            port = int(admin_path.read_text().strip().rsplit(":", 1)[1])
            with contextlib.suppress(OSError):
                status, _, _ = request(port, "GET", "/ready")
                if status == 200:
                    return port
        time.sleep(0.05)
    pytest.fail(f"envoy not ready in 30 s:\n{log.read_text()[-4000:]}")


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        # Join repeats, so a header Envoy doubled fails an equality check instead of hiding.
        merged: dict[str, str] = {}
        for key, value in resp.getheaders():
            k = key.lower()
            merged[k] = f"{merged[k]}, {value}" if k in merged else value
        return resp.status, merged, resp.read()
    finally:
        conn.close()


def test_real_traffic_through_translated_config() -> None:
    with (
        named_server("espeak") as espeak_port,
        named_server("cosyvoice3") as cosy_port,
        tempfile.TemporaryDirectory() as tmp,
    ):
        workdir = Path(tmp)
        access_log = workdir / "access.log"
        listener_port = free_port()
        options = TranslatorOptions(
            listener_address="127.0.0.1",
            listener_port=listener_port,
            ext_proc_port=free_port(),  # nothing listens: failure_mode_allow must kick in
            access_log_path=str(access_log),
        )
        # The fallback differs from the routed model, so the access log tells them apart.
        state = default_state(
            Endpoint(host="127.0.0.1", port=espeak_port),
            Endpoint(host="127.0.0.1", port=cosy_port),
        ).model_copy(update={"default_model": "cosyvoice3"})
        with running_envoy(static_bootstrap(translate(state, options)), workdir) as admin_port:
            status, headers, body = request(
                listener_port,
                "POST",
                "/v1/audio/speech",
                b'{"model":"espeak"}',
                {"x-tts-model": "espeak", "content-type": "application/json"},
            )
            assert status == 200, body
            assert json.loads(body)["server"] == "espeak"
            assert headers["x-tts-backend"] == "espeak"
            assert "x-tts-degraded" not in headers
            assert headers["x-request-id"]

            status, headers, body = request(listener_port, "GET", "/v1/models")
            assert status == 200
            assert headers["content-type"] == "application/json"
            ids = [m["id"] for m in json.loads(body)["data"]]
            assert ids == ["cosyvoice3", "espeak"]

            status, headers, body = request(listener_port, "GET", "/nope")
            assert status == 404
            assert headers["content-type"] == "application/json"
            assert json.loads(body)["error"]["code"] == "not_found"

            # No model header: the filter is down, so the fallback model serves it.
            status, headers, body = request(
                listener_port,
                "POST",
                "/v1/audio/speech",
                b'{"input":"hi"}',
                {"content-type": "application/json"},
            )
            assert status == 200, body
            answer = json.loads(body)
            assert answer["server"] == "cosyvoice3" == state.fallback_model()
            assert answer["model"] == "cosyvoice3"
            assert headers["x-tts-backend"] == "cosyvoice3"
            assert headers["x-tts-degraded"] == "filter-unavailable"

            lines = _access_log_lines(access_log, 4)
            stats = _stats(admin_port, "ext_proc")
        # Every request went through the filter and was let through when it could not connect.
        assert stats["http.ttsgw.ext_proc.failure_mode_allowed"] == 4
        assert stats["cluster.ttsgw_ext_proc.upstream_cx_connect_fail"] >= 1
        by_path = {(line["method"], line["path"], line["model"]): line for line in lines}
        routed = by_path[("POST", "/v1/audio/speech", "espeak")]
        assert routed["upstream_cluster"] == "espeak"
        assert routed["status"] == 200
        assert routed["request_id"]
        degraded = by_path[("POST", "/v1/audio/speech", "cosyvoice3")]
        assert degraded["upstream_cluster"] == "cosyvoice3"


def _stats(admin_port: int, pattern: str) -> dict[str, int]:
    _, _, body = request(admin_port, "GET", f"/stats?filter={pattern}")
    counters = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            counters[name] = int(value)
    return counters


def _access_log_lines(path: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            if len(lines) >= count:
                break
        time.sleep(0.05)
    assert len(lines) >= count, lines
    return [json.loads(ln) for ln in lines]


def test_sticky_split_keeps_each_user_on_one_variant_in_real_envoy() -> None:
    """use_hash_policy + a header hash_policy: the header's hash, not chance, picks the split."""
    with (
        named_server("a") as a_port,
        named_server("b") as b_port,
        tempfile.TemporaryDirectory() as tmp,
    ):
        listener_port = free_port()
        options = TranslatorOptions(
            listener_address="127.0.0.1", listener_port=listener_port, ext_proc_port=free_port()
        )
        state = sticky_state(
            Endpoint(host="127.0.0.1", port=a_port), Endpoint(host="127.0.0.1", port=b_port)
        )
        with running_envoy(static_bootstrap(translate(state, options)), Path(tmp)):

            def variant(user: str | None) -> str:
                headers = {"x-tts-model": "m"} | ({"x-user-id": user} if user else {})
                status, answer, _ = request(listener_port, "GET", "/v1/audio/voices", None, headers)
                assert status == 200
                return answer["x-tts-backend"]

            picks = {u: {variant(f"user-{u}") for _ in range(3)} for u in range(200)}
            anonymous = Counter(variant(None) for _ in range(100))
    assert all(len(seen) == 1 for seen in picks.values()), picks
    share_a = sum(seen == {"a"} for seen in picks.values()) / len(picks)
    assert 0.55 < share_a < 0.85, share_a  # 70/30 on 200 users, far from all-or-nothing
    assert anonymous["a"] > 0 and anonymous["b"] > 0, anonymous
