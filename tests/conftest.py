"""Fixtures: isolated settings, a started runtime, the real app through ASGITransport; and the
test tiers (docs/testing.md): tests that start processes or servers are marked ``slow``, and
the fast tier (``-m "not slow"``) fails a test that starts a process without that mark."""

from __future__ import annotations

import itertools
import os
import platform
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from http_api.app import create_app
from memtrace.auth.crypto import generate_master_key
from memtrace.config import Settings, load_settings
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import TEST_ENV, ServerProcess, Tenant, create_org_key, new_tenant
from tests.postgres_support import pg_server, pg_template, pg_url

__all__ = ["pg_server", "pg_template", "pg_url"]  # fixtures for every test module

# Fixtures that start a server process (a test using one is slow).
PROCESS_FIXTURES = {
    "server",
    "shared_server",
    "tenant",
    "slow_server",
    "capped_server",
    "pg_server",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    # platform.processor() runs `uname -p` once per process and caches it; the openai SDK asks
    # for it on its first request. Ask now, so a fast test using that SDK starts no process.
    platform.processor()


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


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real ``memtrace serve`` per test process, started on first use, for tests that
    neither reconfigure, stop nor kill the server: each takes its own org (``tenant``), so
    none sees another's data. Saves a server start (~2 s of CPU) per test."""
    proc = ServerProcess(tmp_path_factory.mktemp("shared") / "data").start()
    yield proc
    proc.stop()


_tenants = itertools.count()


@pytest.fixture
def tenant(shared_server: ServerProcess) -> Tenant:
    """A fresh org with a read+write key on the shared server, once the server accepts it."""
    org_id, key = new_tenant(shared_server.data_dir, f"tenant-{next(_tenants)}")
    shared_server.wait_for_key(key)
    return Tenant(shared_server, org_id, key)


@pytest.fixture
def master_env() -> dict[str, str]:
    """A fresh MEMTRACE_MASTER_KEY, to pass to the CLI or a server as their environment."""
    return {"MEMTRACE_MASTER_KEY": generate_master_key()}


@pytest.fixture(scope="session")
def _arc_listener() -> Iterator[EmulatorServer]:
    """One emulator listener per test process: stopping uvicorn takes ~0.2 s of shutdown ticks,
    paid once instead of after each of the hundreds of tests that use Arc."""
    server = EmulatorServer(ArcEmulator())
    yield server
    server.stop()


@pytest.fixture
def arc_server(_arc_listener: EmulatorServer) -> EmulatorServer:
    """A fresh Arc emulator (immediate visibility) over real HTTP on 127.0.0.1; a test may
    stop and start it (the next test gets it running again)."""
    _arc_listener.emulator = ArcEmulator()
    if not _arc_listener.running:
        _arc_listener.start()
    return _arc_listener
