"""The queue-status contract: what the control plane sends is what the filter parses, and
a body that is not one is refused."""

from __future__ import annotations

import httpx
import pytest

from control_plane.domain import Endpoint, default_state
from control_plane.queue_status import QueuePoller
from gateway.errors import QueueStatusUnavailableError
from gateway.queue_client import HttpQueueStatusSource
from tests.unit.test_queue_status import FakeFetcher, worker_answer
from ttsgw_contract.queue_status import QueueAggregate


async def test_the_producers_json_parses_back_to_the_same_aggregate() -> None:
    state = default_state(Endpoint(host="esp", port=1), Endpoint(host="cv", port=1))
    fetcher = FakeFetcher({"esp:1": worker_answer(default=2, rate=1.0), "cv:1": TimeoutError()})
    poller = QueuePoller(lambda: state, fetcher)
    await poller.poll_once()
    sent = poller.view().model_copy(update={"revision": 4})
    wire = sent.model_dump_json()
    assert QueueAggregate.model_validate_json(wire) == sent
    public = sent.public().model_dump(mode="json")
    assert public["models"]["espeak"]["levels"]["default"]["depth"] == 2
    assert "esp:1" not in str(public) and "backends" not in public["models"]["espeak"]


@pytest.mark.parametrize(
    "body", [b'{"object": "queue.aggregate"}', b'{"models": {"m": {"busy": "asleep"}}}', b"[]"]
)
async def test_the_filter_refuses_a_body_that_is_not_an_aggregate(body: bytes) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=body))
    source = HttpQueueStatusSource("http://cp", token="t", transport=transport)
    try:
        with pytest.raises(QueueStatusUnavailableError, match="unexpected answer"):
            await source.aggregate()
    finally:
        await source.aclose()
