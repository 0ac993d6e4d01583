"""The gateway filter behind the real Envoy binary, with a hand-written static config.

Routes are direct_responses keyed on ``x-tts-model``, so a 200 body names the model the
filter picked; the lead's full-stack tests cover the translator's real routes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from gateway.config_client import StaticConfigSource
from gateway.ext_proc.server import create_server
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.e2e

ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_T = "type.googleapis.com/envoy."


def _addr(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _direct(prefix: str, body: str, model: str | None = None, status: int = 200) -> dict:
    match: dict = {"prefix": prefix}
    if model is not None:
        match["headers"] = [{"name": "x-tts-model", "string_match": {"exact": model}}]
    return {
        "match": match,
        "direct_response": {"status": status, "body": {"inline_string": body}},
    }


def envoy_config(listener_port: int, admin_port: int, filter_port: int) -> dict:
    ext_proc = {
        "@type": _T + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": "ttsgw_ext_proc"}},
        "failure_mode_allow": True,
        "allow_mode_override": True,
        "message_timeout": "0.5s",
        "processing_mode": {
            "request_header_mode": "SEND",
            "response_header_mode": "SKIP",
            "request_body_mode": "BUFFERED",
            "response_body_mode": "NONE",
            "request_trailer_mode": "SKIP",
            "response_trailer_mode": "SKIP",
        },
    }
    routes = [
        _direct("/v1/audio/speech", "speech:m1", "m1"),
        _direct("/v1/audio/speech", "speech:m2", "m2"),
        _direct("/v1/audio/voices", "voices:m1", "m1"),
        _direct("/", "route:m1", "m1"),
        _direct("/", "unrouted", None, status=200),
    ]
    hcm = {
        "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {"name": "envoy.filters.http.ext_proc", "typed_config": ext_proc},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": _addr(admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "gw",
                    "address": _addr(listener_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "ttsgw_ext_proc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "ttsgw_ext_proc",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _addr(filter_port)}}]}
                        ],
                    },
                }
            ],
        },
    }


@pytest.fixture
async def envoy_gw(tmp_path):
    source = StaticConfigSource.of_models("m1", "m2", version="e2e")
    registry = CollectorRegistry()
    settings = GatewaySettings(ext_proc_host="127.0.0.1", ext_proc_port=0, metrics_port=0)
    server, filter_port = create_server(settings, source, registry)
    await server.start()
    listener_port, admin_port = _free_port(), _free_port()
    config = tmp_path / "envoy.yaml"
    config.write_text(json.dumps(envoy_config(listener_port, admin_port, filter_port)))
    log = (tmp_path / "envoy.log").open("w")
    envoy = subprocess.Popen(
        [ENVOY, "-c", str(config), "--disable-hot-restart", "--concurrency", "1",
         "-l", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{listener_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5, trust_env=False) as client:
            deadline = time.monotonic() + 30
            while True:
                assert envoy.poll() is None, (tmp_path / "envoy.log").read_text()
                try:
                    ready = await client.get(f"http://127.0.0.1:{admin_port}/ready")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "envoy did not become ready"
                await asyncio.sleep(0.05)
            yield client, registry, base
    finally:
        envoy.terminate()
        envoy.wait(10)
        log.close()
        # Captured by pytest, so shown only when a test fails.
        print((tmp_path / "envoy.log").read_text())
        await server.stop(grace=None)


def _count(registry, outcome):
    """Requests with `outcome`, summed over the model and class labels."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "ttsgw_filter_requests_total" and sample.labels.get("outcome") == outcome
    )


async def test_body_model_picks_the_route(envoy_gw):
    client, registry, _ = envoy_gw
    for model in ("m1", "m2"):
        r = await client.post(
            "/v1/audio/speech",
            json={"model": model, "input": "hello", "voice": "alloy"},
            headers={"x-tts-model": "m1"},  # must not win over the body
        )
        assert (r.status_code, r.text) == (200, f"speech:{model}")
    assert _count(registry, "routed") == 2


async def test_unknown_model_is_openai_404_through_envoy(envoy_gw):
    client, _, _ = envoy_gw
    r = await client.post("/v1/audio/speech", json={"model": "tts-9", "input": "hi"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "'tts-9'" in error["message"] and "m1, m2" in error["message"]


async def test_bad_json_is_400_through_envoy(envoy_gw):
    client, _, _ = envoy_gw
    r = await client.post(
        "/v1/audio/speech", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_voices_query_and_client_headers_are_stripped(envoy_gw):
    client, registry, _ = envoy_gw
    assert (await client.get("/v1/audio/voices", params={"model": "m1"})).text == "voices:m1"
    assert (await client.get("/v1/audio/voices", params={"model": "x"})).status_code == 404
    # A client naming the route itself is ignored: its x-tts-model is removed.
    other = await client.post("/v1/other", content=b"x" * 100_000, headers={"x-tts-model": "m1"})
    assert (other.status_code, other.text) == (200, "unrouted")
    assert _count(registry, "passthrough") == 1
    # The passthrough mode override means Envoy never sent that body to the filter.
    assert (
        registry.get_sample_value("ttsgw_filter_duration_seconds_count", {"phase": "request_body"})
        is None
    )


async def test_openai_sdk_sees_routing_and_model_not_found(envoy_gw):
    _, _, base = envoy_gw
    sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    try:
        audio = await sdk.audio.speech.create(model="m2", voice="alloy", input="hello")
        assert audio.content == b"speech:m2"
        with pytest.raises(openai.NotFoundError) as err:
            await sdk.audio.speech.create(model="tts-1", voice="alloy", input="hello")
        assert err.value.code == "model_not_found" and err.value.param == "model"
        with pytest.raises(openai.BadRequestError) as bad:
            await sdk.audio.speech.create(model="m1", voice="alloy", input="")
        assert bad.value.param == "input"
    finally:
        await sdk.close()
