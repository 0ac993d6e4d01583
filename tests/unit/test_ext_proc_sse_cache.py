"""The filter caches streamed answers: an SSE miss fills once complete, hits replay it whole."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from tests.unit.test_ext_proc_cache import (
    Harness,
    Stream,
    body_msg,
    headers_msg,
    immediate_headers,
    response_header,
    speech_body,
)
from ttsgw_contract.modes import FILL_MODE

SSE_TYPE = "text/event-stream; charset=utf-8"


def event(obj: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DELTAS = [
    event({"type": "speech.audio.delta", "audio": base64.b64encode(bytes([i]) * 3000).decode()})
    for i in range(3)
]
DONE = event(
    {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
    }
)
STREAM = b"".join([*DELTAS, DONE])


async def respond(s: Stream, chunks: list[bytes], content_type: str = SSE_TYPE):
    head = await s.send(
        headers_msg(
            {":status": "200", "content-type": content_type, "x-tts-backend": "espeak"},
            response=True,
        )
    )
    answers: list[ProcessingResponse] = []
    for i, chunk in enumerate(chunks):
        answers.append(await s.send(body_msg(chunk, response=True, eos=i == len(chunks) - 1)))
    return head, answers


async def test_a_completed_sse_miss_fills_and_the_next_is_a_hit_with_the_same_stream():
    h = Harness()
    first = h.stream()
    await first.request(speech_body(stream_format="sse"))
    # Envoy hands the body over the way the worker sent it: an event per chunk, then an
    # empty end of stream. Each chunk goes on to the client unchanged.
    head, answers = await respond(first, [*DELTAS, DONE, b""])
    assert response_header(head, "response_headers", "x-tts-cache") == "miss"
    assert head.mode_override == FILL_MODE
    assert all(a.WhichOneof("response") == "response_body" for a in answers)
    assert not any(a.response_body.HasField("response") for a in answers)
    await first.close()
    await h.settle()
    assert h.store.entry_count() == 1

    hit = await h.stream().request(speech_body(stream_format="sse"))
    assert hit.immediate_response.status.code == 200
    assert hit.immediate_response.body == STREAM
    assert immediate_headers(hit)["content-type"] == SSE_TYPE
    assert immediate_headers(hit)["x-tts-cache"] == "hit"


async def test_sse_and_audio_answers_never_share_an_entry():
    h = Harness()
    s = h.stream()
    await s.request(speech_body(stream_format="sse"))
    await respond(s, [STREAM])
    await s.close()
    await h.settle()
    audio = h.stream()
    body = await audio.request(speech_body())  # the same request, stream_format=audio
    assert body.WhichOneof("response") == "request_body"  # a miss: on to the backend
    await audio.close()
    sse = await h.stream().request(speech_body(stream_format="sse"))
    assert sse.immediate_response.body == STREAM


@pytest.mark.parametrize(
    "chunks",
    [
        DELTAS,  # the worker went away before speech.audio.done
        [*DELTAS, b"data: {not json\n\n"],
        [*DELTAS, DONE[:-10]],
    ],
)
async def test_an_event_stream_without_its_done_event_is_not_stored(chunks):
    h = Harness()
    leader = h.stream()
    await leader.request(speech_body(stream_format="sse"))
    follower = asyncio.create_task(h.stream().request(speech_body(stream_format="sse")))
    await asyncio.sleep(0.02)
    await respond(leader, chunks)
    # The follower does not get a truncated stream: it goes to the backend itself.
    assert (await asyncio.wait_for(follower, 1.0)).WhichOneof("response") == "request_body"
    await leader.close()
    await h.settle()
    assert h.store.entry_count() == 0


async def test_followers_of_an_sse_leader_get_the_whole_stream():
    h = Harness()
    leader = h.stream()
    await leader.request(speech_body(stream_format="sse"))
    waiting = [
        asyncio.create_task(h.stream().request(speech_body(stream_format="sse"))) for _ in range(3)
    ]
    await asyncio.sleep(0.02)
    await respond(leader, [*DELTAS, DONE])
    answers = await asyncio.gather(*waiting)
    assert {a.immediate_response.body for a in answers} == {STREAM}


async def test_chunked_pcm_fills_like_any_audio():
    h = Harness()
    s = h.stream()
    await s.request(speech_body(response_format="pcm"))
    await respond(s, [b"\x01\x00" * 1000, b"\x02\x00" * 1000, b""], content_type="audio/pcm")
    await s.close()
    await h.settle()
    hit = await h.stream().request(speech_body(response_format="pcm"))
    assert hit.immediate_response.body == b"\x01\x00" * 1000 + b"\x02\x00" * 1000
    assert immediate_headers(hit)["content-type"] == "audio/pcm"
