"""Fixtures: isolated settings, a started runtime, the real app through ASGITransport; and the
test tiers (docs/testing.md): tests that start processes or servers are marked ``slow``, and
the fast tier (``-m "not slow"``) fails a test that starts a process without that mark."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.config import Settings, load_settings
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import TEST_ENV, ServerProcess, create_org_key

# Fixtures that start a server process (a test using one is slow).
PROCESS_FIXTURES = {"server", "slow_server", "capped_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the fast tier fast: there, starting a process fails the test, naming the fix."""
    if "not slow" not in (request.config.getoption("markexpr") or ""):
        return
    node = request.node.nodeid

    class _Refused(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            pytest.fail(f"{node} starts a process: mark it @pytest.mark.slow", pytrace=False)

    monkeypatch.setattr(subprocess, "Popen", _Refused)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's MEMTRACE_* variables or a memtrace.toml in the cwd."""
    for name in list(os.environ):
        if name.startswith("MEMTRACE_"):
            monkeypatch.delenv(name)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return load_settings(None, {"storage.data_dir": data_dir})


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(settings)
    await rt.start()
    yield rt
    await rt.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The real FastAPI app in process (no auth header: tests add the key they need)."""
    app = create_app(runtime, manage_runtime=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


@pytest.fixture
async def org_key(runtime: Runtime) -> tuple[str, str]:
    """(org id, read+write key) of a fresh org."""
    return await create_org_key(runtime, "acme")


@pytest.fixture
async def api(client: httpx.AsyncClient, org_key: tuple[str, str]) -> httpx.AsyncClient:
    """The in-process client authenticated as a read+write key of org "acme"."""
    client.headers["x-api-key"] = org_key[1]
    return client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real ``memtrace serve`` subprocess on a free port (stopped after the test)."""
    proc = ServerProcess(tmp_path / "server-data").start()
    yield proc
    proc.stop()


@pytest.fixture
def arc_server() -> Iterator[EmulatorServer]:
    """A fresh Arc emulator (immediate visibility) over real HTTP on 127.0.0.1."""
    server = EmulatorServer(ArcEmulator()).start()
    yield server
    server.stop()
