"""End-to-end fixtures: a real stack per module (or one shared), its logs printed on failure.

A module marked `shared_stack` declares that it only reads: no admin writes, no kills,
no environment of its own. Such modules share one session-wide stack, because a stack
start (Redis, control plane, filter, two workers, Envoy, converged) is most of what a
small e2e module costs. Any module that changes the stack keeps a stack of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.stack import Stack, running_stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(Path(tmp_path_factory.mktemp("shared-stack"))) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(Path(tmp_path_factory.mktemp("stack"))) as started:
        yield started


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Stack:
    shared = request.node.get_closest_marker("shared_stack") is not None
    started: Stack = request.getfixturevalue("shared_stack" if shared else "module_stack")
    return started


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "stack" in request.fixturenames:
        print(request.getfixturevalue("stack").logs())
