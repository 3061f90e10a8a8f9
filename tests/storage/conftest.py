"""Fixtures for the storage tests: the Arc emulator served by uvicorn on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer


@pytest.fixture
def arc_server() -> Iterator[EmulatorServer]:
    """A fresh emulator (immediate visibility) over real HTTP."""
    server = EmulatorServer(ArcEmulator()).start()
    yield server
    server.stop()
