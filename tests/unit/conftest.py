"""Fixtures shared by the unit tests: a started control plane on in-memory parts."""

from __future__ import annotations

import pytest

from control_plane.domain import default_state
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet


@pytest.fixture
async def cp() -> ControlPlane:
    """The default state, committed and published; modules that need other parts override it."""
    control_plane = ControlPlane(
        InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions()
    )
    await control_plane.start(default_state())
    return control_plane
