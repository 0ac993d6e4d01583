"""The filter as Envoy sees it: a real grpc.aio server, a real client stream, real HTTP ops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
    ProcessingResponse,
)
from envoy.service.ext_proc.v3.external_processor_pb2_grpc import ExternalProcessorStub
from prometheus_client import CollectorRegistry

from gateway.config_client import StaticConfigSource
from gateway.ext_proc.server import create_server
from gateway.main import run
from gateway.metrics_server import MetricsServer
from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
ROUTED_M2 = {"model": "m2", "class": "none", "outcome": "routed"}


def _headers(method: str, path: str, extra: dict[str, str] | None = None, eos: bool = False):
    pairs = {":method": method, ":path": path, ":scheme": "http", ":authority": "gw"}
    pairs.update(extra or {})
    hm = HeaderMap(headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()])
    return ProcessingRequest(request_headers=HttpHeaders(headers=hm, end_of_stream=eos))


def _body(raw: bytes) -> ProcessingRequest:
    return ProcessingRequest(request_body=HttpBody(body=raw, end_of_stream=True))


@pytest.fixture
async def filter_server():
    source = StaticConfigSource.of_models("m1", "m2", version="v7")
    registry = CollectorRegistry()
    settings = GatewaySettings(ext_proc_host="127.0.0.1", ext_proc_port=0, metrics_port=0)
    server, port = create_server(settings, source, registry)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await channel.channel_ready()
    try:
        yield ExternalProcessorStub(channel), source, registry
    finally:
        await channel.close()
        await server.stop(grace=None)


async def _exchange(stub, *messages: ProcessingRequest) -> list[ProcessingResponse]:
    """Like Envoy: send one message, wait for its answer, stop after an immediate response."""
    call = stub.Process()
    answers = []
    for message in messages:
        await call.write(message)
        answer = await call.read()
        assert answer is not grpc.aio.EOF
        answers.append(answer)
        if answer.HasField("immediate_response"):
            break
    await call.done_writing()
    return answers


async def test_speech_is_routed_by_its_json_model(filter_server):
    stub, _, registry = filter_server
    body = json.dumps({"model": "m2", "input": "hello", "voice": "alloy"}).encode()
    head, tail = await _exchange(
        stub,
        _headers("POST", "/v1/audio/speech", {"x-tts-model": "m1", "x-tts-priority": "high"}),
        _body(body),
    )
    removed = sorted(head.request_headers.response.header_mutation.remove_headers)
    assert removed == ["x-tts-model"]
    stamped = {
        h.header.key: h.header.raw_value
        for h in head.request_headers.response.header_mutation.set_headers
    }
    assert stamped["x-tts-priority"] == b"default"  # the client's "high" is not honoured
    common = tail.request_body.response
    assert common.clear_route_cache
    [header] = common.header_mutation.set_headers
    assert (header.header.key, header.header.raw_value) == ("x-tts-model", b"m2")
    assert registry.get_sample_value("ttsgw_filter_requests_total", ROUTED_M2) == 1


@pytest.mark.parametrize(
    ("raw", "status", "param", "code"),
    [
        (b'{"model": "nope", "input": "hi"}', 404, "model", "model_not_found"),
        (b"not json", 400, None, None),
        (b'{"input": "hi"}', 400, "model", None),
        # The code is the speech contract's (ttsgw_contract.speech.BLANK_TEXT).
        (b'{"model": "m1", "input": ""}', 400, "input", "blank_text"),
    ],
)
async def test_bad_speech_gets_openai_error(filter_server, raw, status, param, code):
    stub, _, registry = filter_server
    answers = await _exchange(stub, _headers("POST", "/v1/audio/speech"), _body(raw))
    immediate = answers[-1].immediate_response
    assert immediate.status.code == status
    assert [(h.header.key, h.header.raw_value) for h in immediate.headers.set_headers] == [
        ("content-type", b"application/json")
    ]
    error = json.loads(immediate.body)["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert "Traceback" not in error["message"]
    # Rejected before a known model was settled on: a client's name is never a label value.
    labels = {"model": "unknown", "class": "none", "outcome": "rejected_4xx"}
    assert registry.get_sample_value("ttsgw_filter_requests_total", labels)


async def test_a_body_over_grpcs_default_4_mib_reaches_the_filter(filter_server):
    """The server takes what Envoy may send (MAX_EXT_PROC_MESSAGE_BYTES), not gRPC's 4 MiB."""
    stub, _, _ = filter_server
    raw = json.dumps({"model": "m1", "input": "hi", "padding": "x" * (6 * 1024 * 1024)})
    head, tail = await _exchange(stub, _headers("POST", "/v1/audio/speech"), _body(raw.encode()))
    assert head.HasField("request_headers")
    [header] = tail.request_body.response.header_mutation.set_headers
    assert (header.header.key, header.header.raw_value) == ("x-tts-model", b"m1")


async def test_voices_routing_and_unknown_model(filter_server):
    stub, _, _ = filter_server
    [ok] = await _exchange(stub, _headers("GET", "/v1/audio/voices?model=m1", eos=True))
    assert ok.request_headers.response.clear_route_cache
    stamped = {
        h.header.key: h.header.raw_value
        for h in ok.request_headers.response.header_mutation.set_headers
    }
    assert stamped["x-tts-model"] == b"m1"
    [missing] = await _exchange(stub, _headers("GET", "/v1/audio/voices?model=zz", eos=True))
    assert missing.immediate_response.status.code == 404


async def test_many_concurrent_streams(filter_server):
    import asyncio

    stub, _, registry = filter_server
    body = _body(b'{"model": "m1", "input": "x"}')
    results = await asyncio.gather(
        *(_exchange(stub, _headers("POST", "/v1/audio/speech"), body) for _ in range(50))
    )
    assert all(r[1].request_body.response.clear_route_cache for r in results)
    routed = {"model": "m1", "class": "none", "outcome": "routed"}
    assert registry.get_sample_value("ttsgw_filter_requests_total", routed) == 50


async def test_metrics_and_health_over_http():
    source = StaticConfigSource()
    registry = CollectorRegistry()
    create_server(GatewaySettings(ext_proc_host="127.0.0.1", ext_proc_port=0), source, registry)
    ops = MetricsServer(registry, source)
    port = await ops.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json()["config_ready"] is False
            assert (await client.get("/readyz")).status_code == 503
            source.set(StaticConfigSource.of_models("m1", version="v9").current())
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/healthz")).json()["config_version"] == "v9"
            metrics = await client.get("/metrics")
            passthrough = '{class="none",model="unknown",outcome="passthrough"} 0.0'
            assert "ttsgw_filter_requests_total" + passthrough in metrics.text
            assert 'ttsgw_filter_config_version_info{models="1",version="v9"} 1.0' in metrics.text
            assert (await client.get("/nope")).status_code == 404
    finally:
        await ops.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_taken_port_exits_2_with_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = run(["--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ttsgw ext-proc: cannot listen on 127.0.0.1:") and "\n" not in err


def test_missing_token_file_exits_2(tmp_path, capsys):
    code = run(["--control-plane-token-file", str(tmp_path / "absent"), "--port", "0"])
    assert code == 2
    assert "cannot read control plane token file" in capsys.readouterr().err


def test_process_serves_until_sigterm(tmp_path):
    grpc_port, metrics_port = _free_port(), _free_port()
    token = tmp_path / "token"
    token.write_text("secret\n")
    env = {**os.environ, "TTSGW_METRICS_PORT": str(metrics_port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.main", "--host", "127.0.0.1", "--port", str(grpc_port),
         "--control-plane-url", f"http://127.0.0.1:{_free_port()}",
         "--control-plane-token-file", str(token)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "filter did not come up"
                time.sleep(0.05)
        # No control plane at that URL: alive, failing open, not ready.
        assert health.json()["config_ready"] is False
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=2):
            pass
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, output
        assert output.count("keeping the last good config") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
