"""Fixtures for every test: each test starts from, and gives back, the same environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    # A variable one test sets must not decide how a later one behaves (or which token a
    # stack it starts uses), so whatever a test adds, changes or removes is put back.
    saved = dict(os.environ)
    yield
    for key in os.environ.keys() - saved.keys():
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
