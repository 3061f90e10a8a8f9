"""PostgreSQL for the tests: one throwaway server per test process (memtrace/testing/postgres.py),
a template database with every migration applied, and a fresh database per test cloned from
it (~50 ms). Tests using these fixtures are marked slow (they start a server).

Without the server binaries the tests are skipped locally with the install hint, and fail
when ``CI`` is set or ``MEMTRACE_TESTS_POSTGRES=required`` (``.ci/run`` sets it), so a CI
machine without PostgreSQL cannot pass silently.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from memtrace.config import PostgresSettings
from memtrace.testing.postgres import PgServer, PostgresUnavailable, start_postgres

_counter = itertools.count()
TEMPLATE = "memtrace_template"


async def migrate_all(url: str) -> None:
    """Every component's migrations, as a starting replica runs them."""
    from memtrace.metadata.postgres import migrate as migrate_metadata
    from memtrace.storage.arc.pg_outbox import migrate as migrate_outbox
    from memtrace.storage.postgres.db import PgDatabase
    from memtrace.storage.postgres.store import migrate as migrate_memories

    db = PgDatabase(PostgresSettings(url=url, pool_min=0, pool_max=2))
    await db.open()
    try:
        await migrate_metadata(db)
        await migrate_memories(db)
        await migrate_outbox(db)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_postgres(settings={"max_connections": 200})
    except PostgresUnavailable as exc:
        if os.environ.get("CI") or os.environ.get("MEMTRACE_TESTS_POSTGRES") == "required":
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    url = pg_server.create_database(TEMPLATE)
    # in a thread of its own: the first user may be an async fixture, inside a running loop
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate_all(url)).result()
    return TEMPLATE


@pytest.fixture
def pg_url(pg_server: PgServer, pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database; dropped after the test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=pg_template)
    try:
        yield url
    finally:
        pg_server.drop_database(name)
