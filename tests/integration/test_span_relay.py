"""The span relay over real HTTP: Zipkin v2 in, kept traces out, a dead collector counted."""

from __future__ import annotations

import asyncio
import socket

import httpx

from tests.e2e.zipkin_receiver import running_receiver
from ttsgw_common.telemetry.relay_server import create_server
from ttsgw_common.telemetry.settings import TracingSettings

OUT_OF_RATIO = "0" * 16 + "ffffffffffffffff"


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def trace(trace_id: str, status: str = "200") -> list[dict]:
    return [
        {"traceId": trace_id, "id": "b", "parentId": "a", "name": "child", "duration": 10},
        {
            "traceId": trace_id,
            "id": "a",
            "name": "root",
            "duration": 100,
            "tags": {"http.status_code": status},
        },
    ]


def settings(zipkin_url: str) -> TracingSettings:
    return TracingSettings(
        relay_port=0, zipkin_url=zipkin_url, sample_ratio=0.0, grace_s=0.1, max_wait_s=2
    )


async def metric(port: int, needle: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(needle))


async def test_errors_are_forwarded_and_ordinary_traces_dropped_at_zero_ratio() -> None:
    async with running_receiver() as (collected, port, _):
        server, relay_port = create_server(settings(f"http://127.0.0.1:{port}/api/v2/spans"))
        async with server.running(), httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{relay_port}/api/v2/spans"
            assert (await client.post(url, json=trace(OUT_OF_RATIO, "500"))).status_code == 202
            assert (await client.post(url, json=trace("1" * 32))).status_code == 202
            assert (await client.post(url, content=b"nope")).status_code == 400
            for _ in range(50):
                if (
                    len(collected.spans) == 2
                    and await metric(relay_port, "ttsgw_relay_traces_total") == 2
                ):
                    break
                await asyncio.sleep(0.1)
            assert {s["traceId"] for s in collected.spans} == {OUT_OF_RATIO}
            assert (
                await metric(relay_port, 'ttsgw_relay_spans_dropped_total{reason="sampled_out"}')
                == 2
            )
            assert await metric(relay_port, "ttsgw_relay_spans_forwarded_total") == 2


async def test_a_dead_collector_is_counted_and_the_relay_keeps_answering() -> None:
    server, relay_port = create_server(settings(f"http://127.0.0.1:{dead_port()}/api/v2/spans"))
    async with server.running(), httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{relay_port}/api/v2/spans"
        for i in range(3):
            response = await client.post(url, json=trace(f"{i + 1:016x}" + "f" * 16, "503"))
            assert response.status_code == 202
        needle = 'ttsgw_relay_spans_dropped_total{reason="forward_failed"}'
        for _ in range(50):
            if await metric(relay_port, needle) == 6:
                break
            await asyncio.sleep(0.1)
        assert await metric(relay_port, needle) == 6
        assert (await client.get(f"http://127.0.0.1:{relay_port}/healthz")).status_code == 200


async def test_envoys_protobuf_reports_are_decided_and_forwarded_as_json() -> None:
    from ttsgw_common.telemetry import zipkin_proto

    spans = zipkin_proto.ListOfSpans()
    for trace_id, status in ((bytes.fromhex(OUT_OF_RATIO), "500"), (b"\x11" * 16, "200")):
        root = spans.spans.add(trace_id=trace_id, id=b"\x01" * 8, name="ingress", duration=5)
        root.tags["http.status_code"] = status
        spans.spans.add(trace_id=trace_id, id=b"\x02" * 8, parent_id=b"\x01" * 8, name="c")
    async with running_receiver() as (collected, port, _):
        server, relay_port = create_server(settings(f"http://127.0.0.1:{port}/api/v2/spans"))
        async with server.running(), httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{relay_port}/api/v2/spans"
            proto = {"content-type": zipkin_proto.CONTENT_TYPE}
            body = spans.SerializeToString()
            assert (await client.post(url, content=body, headers=proto)).status_code == 202
            bad = await client.post(url, content=b"\xff\xff", headers=proto)
            assert bad.status_code == 400
            for _ in range(50):
                if len(collected.spans) == 2:
                    break
                await asyncio.sleep(0.1)
            assert {s["traceId"] for s in collected.spans} == {OUT_OF_RATIO}
            assert {s["name"] for s in collected.spans} == {"ingress", "c"}
            assert await metric(relay_port, "ttsgw_relay_spans_received_total") == 4
