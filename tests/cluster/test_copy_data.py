"""``memtrace org copy-data`` between the embedded file, the cluster's PostgreSQL and Arc, through
the CLI (in process), on a real PostgreSQL server and the Arc emulator over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from memtrace.cli import cli
from memtrace.config import PostgresSettings
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.timestamps import now_us
from memtrace.storage.base import MemoryQuery
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.layout import org_dir
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.store import PostgresStore
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.storage.arc_support import memory


def run(data_dir: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout.strip()


async def _embedded(path: Path, org_id: str, start: int, n: int) -> None:
    store = EmbeddedStore(path, org_id, synchronous="NORMAL")
    await store.open()
    base = now_us() - 3_600_000_000
    await store.write(
        [
            memory(f"memory {i}", time_us=base + i, tags=("t",) if i % 2 else (), importance=0.5)
            for i in range(start, start + n)
        ],
        None,
    )
    await store.close()


async def _all(store: EmbeddedStore | PostgresStore, db: PgDatabase | None) -> list[MemoryRecord]:
    if db is not None:
        await db.open()
    await store.open()
    try:
        return await store.query(MemoryQuery(org_id=store.org_id, limit=10_000, order="asc"))
    finally:
        await store.close()
        if db is not None:
            await db.close()


def test_copy_between_embedded_postgres_and_arc(tmp_path: Path, pg_url: str) -> None:
    data_dir = tmp_path / "data"
    env = {"MEMTRACE_POSTGRES_URL": pg_url, "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres"}
    org_id = run(data_dir, env, "org", "create", "acme")
    embedded_path = org_dir(data_dir, org_id) / "memories.db"
    asyncio.run(_embedded(embedded_path, org_id, 0, 2500))

    # embedded -> PostgreSQL, then only what was added since (the cursor is kept)
    assert run(data_dir, env, "org", "copy-data", org_id, "--to", "postgres") == "2500"
    asyncio.run(_embedded(embedded_path, org_id, 2500, 500))
    result = CliRunner().invoke(
        cli, ["org", "copy-data", org_id, "--to", "postgres", "--data-dir", str(data_dir)], env=env
    )
    assert result.stdout.strip() == "3000" and "500 copied now" in result.stderr
    source = asyncio.run(_all(EmbeddedStore(embedded_path, org_id), None))
    db = PgDatabase(PostgresSettings(url=pg_url))
    copied = asyncio.run(_all(PostgresStore(db, org_id), db))
    assert copied == source and len(copied) == 3000  # every field, ids and times kept

    # PostgreSQL -> a fresh embedded file
    elsewhere = tmp_path / "other"
    run(elsewhere, env, "org", "copy-data", org_id, "--to", "embedded")
    back = EmbeddedStore(org_dir(elsewhere, org_id) / "memories.db", org_id)
    assert asyncio.run(_all(back, None)) == source

    # PostgreSQL (the org's store) -> its Arc binding
    emulator = ArcEmulator(token=None)
    arc = EmulatorServer(emulator).start()
    try:
        run(data_dir, env, "org", "add-arc", org_id, "--url", arc.url, "--database", "acme")
        assert run(data_dir, env, "org", "copy-data", org_id, "--to", "arc") == "3000"
        emulator.flush()
        in_arc = emulator.sql("acme", 'SELECT id FROM "events"')
        assert {row[0] for row in in_arc} == {r.id for r in source}
    finally:
        arc.stop()


def test_copy_needs_postgres_for_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    org_id = run(data_dir, {}, "org", "create", "acme")
    result = CliRunner().invoke(
        cli, ["org", "copy-data", org_id, "--to", "postgres", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 1 and "needs [postgres] url" in result.stderr


async def test_moving_an_embedded_deployment_into_cluster_mode(tmp_path: Path, pg_url: str) -> None:
    """copy-metadata, then copy-data per org: the keys clients hold keep working on the
    cluster, and every memory is there."""
    from tests.cluster.test_replicas_in_process import start_replicas, stop_replicas

    data_dir = tmp_path / "data"
    org_id = run(data_dir, {}, "org", "create", "acme")
    key = run(data_dir, {}, "key", "create", "--org", org_id, "--name", "k")
    await _embedded(org_dir(data_dir, org_id) / "memories.db", org_id, 0, 120)
    env = {"MEMTRACE_POSTGRES_URL": pg_url, "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres"}
    result = CliRunner().invoke(cli, ["copy-metadata", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.stderr
    assert "orgs: 1 added of 1" in result.stderr
    assert "api_keys: 1 added of 1" in result.stderr
    again = CliRunner().invoke(cli, ["copy-metadata", "--data-dir", str(data_dir)], env=env)
    assert "orgs: 0 added of 1 (1 already there)" in again.stderr
    assert run(data_dir, env, "org", "copy-data", "acme", "--to", "postgres") == "120"

    (replica,) = await start_replicas(tmp_path, pg_url, n=1)
    try:
        listed = await replica[1].get(
            "/api/v1/memories", params={"limit": 1000}, headers={"x-api-key": key}
        )
        assert listed.status_code == 200 and listed.json()["count"] == 120
    finally:
        await stop_replicas([replica])
