"""Fixtures for the storage tests: the Arc emulator served by uvicorn on 127.0.0.1, and a
runtime with the app in process for orgs on either backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer


@pytest.fixture
async def arc_files_server(tmp_path: Path) -> AsyncIterator[EmulatorServer]:
    """An emulator that keeps Arc's Parquet files on disk, with the delete API turned on."""
    emulator = ArcEmulator(data_dir=tmp_path / "arc-files")
    emulator.delete_enabled = True
    server = EmulatorServer(emulator).start()
    yield server
    server.stop()


@pytest.fixture
async def served_runtime(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    settings = load_settings(
        None,
        {"storage.data_dir": data_dir, "arc.flush_interval_ms": 10, "arc.visibility_grace_s": 0},
    )
    runtime = Runtime(settings)
    await runtime.start(sweep=False)
    app = create_app(runtime, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        yield runtime, client
    await runtime.close()
