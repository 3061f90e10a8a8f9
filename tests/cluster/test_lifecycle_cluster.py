"""The data lifecycle in cluster mode on a real PostgreSQL server: retention policies and the
audit log in the PostgreSQL metadata, the lifecycle CLI (org create --id, retention, export,
import, forget, audit) against the cluster's database, and one replica sweeping at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from click.testing import CliRunner

from memtrace.cli import cli
from memtrace.config import PostgresSettings
from memtrace.domain.errors import Conflict
from memtrace.domain.lifecycle import DAY_US, AuditEntry, RetentionPolicy
from memtrace.domain.timestamps import now_us
from memtrace.metadata.postgres import PgCatalog
from memtrace.runtime import SWEEP_LOCK
from memtrace.storage.base import MemoryQuery
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.store import PostgresStore
from tests.cluster.test_replicas_in_process import start_replicas, stop_replicas
from tests.helpers import create_org_key
from tests.storage.arc_support import memory


async def test_retention_policies_and_audit_log_on_postgres(pg_url: str) -> None:
    catalog = PgCatalog(PgDatabase(PostgresSettings(url=pg_url)))
    await catalog.open()
    try:
        now = now_us()
        await catalog.create_org("org_kept1", "kept", now)
        await catalog.create_org("org_gone1", "gone", now)
        try:
            await catalog.create_org("org_kept1", "another", now)
            raise AssertionError("a taken id must be refused")
        except Conflict:
            pass
        assert await catalog.get_retention("org_kept1") is None
        policy = RetentionPolicy(30, {"decision": 365})
        await catalog.put_retention("org_kept1", policy, now)
        await catalog.put_retention("org_gone1", RetentionPolicy(7), now)
        assert await catalog.get_retention("org_kept1") == policy
        await catalog.put_retention("org_kept1", RetentionPolicy(None, {"session": 0}), now)
        assert await catalog.list_retention() == {
            "org_gone1": RetentionPolicy(7),
            "org_kept1": RetentionPolicy(None, {"session": 0}),
        }
        assert await catalog.delete_retention("org_kept1")
        assert not await catalog.delete_retention("org_kept1")

        for n, action in enumerate(("forget", "retention", "import")):
            entry = AuditEntry("org_gone1", now + n, "cli", action, n, {"tags": ["t"]}, f"d{n}")
            await catalog.record_audit(entry)
        entries = await catalog.list_audit("org_gone1")
        assert [e.action for e in entries] == ["import", "retention", "forget"]  # newest first
        assert entries[-1].filter == {"tags": ["t"]} and entries[-1].detail == "d0"
        assert [e.action for e in await catalog.list_audit("org_gone1", limit=1)] == ["import"]
        assert len(await catalog.list_audit("org_gone1", since=now + 1)) == 2
        assert await catalog.list_audit("org_kept1") == []  # another org's entries never

        session = await catalog.create_session("org_gone1", "crawler", None, now)
        assert not await catalog.delete_session("org_kept1", session.id)  # not its session
        assert await catalog.delete_session("org_gone1", session.id)
        assert await catalog.get_session("org_gone1", session.id) is None

        await catalog.delete_org("org_gone1")  # its policy goes, its audit log stays
        assert await catalog.list_retention() == {}
        assert len(await catalog.list_audit("org_gone1")) == 3
    finally:
        await catalog.close()
        await catalog.pg.close()


async def test_one_replica_sweeps_at_a_time(tmp_path: Path, pg_url: str) -> None:
    overrides = {"retention.days": 1, "retention.enabled": False}
    replicas = await start_replicas(tmp_path, pg_url, n=2, **overrides)
    try:
        (first, _), (second, _) = replicas
        org_id, _ = await create_org_key(first, "acme")
        store = await second.stores.get(org_id)
        old = now_us() - 3 * DAY_US
        items = [memory(f"old {i}", time_us=old + i) for i in range(5)]
        await store.write([*items, memory("new", time_us=now_us())], None)
        assert first.pg is not None
        async with first.pg.exclusive(SWEEP_LOCK) as mine:  # the first replica is sweeping
            assert mine
            assert await second.sweeper.run_turn() is None
            assert second.sweeper.skipped == 1
        swept = await second.sweeper.run_turn()  # the turn is free again
        assert swept is not None and swept[org_id] == 5
        left = await store.query(MemoryQuery(org_id=org_id, limit=10))
        assert [r.content for r in left] == ["new"]
        audit = await first.catalog.list_audit(org_id)
        assert [(e.actor, e.count) for e in audit] == [("retention", 5)]
    finally:
        await stop_replicas(replicas)


def run(data_dir: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout.strip()


async def _write(pg_url: str, org_id: str, n: int) -> None:
    db = PgDatabase(PostgresSettings(url=pg_url))
    await db.open()
    try:
        store = PostgresStore(db, org_id)
        await store.open()
        base = now_us() - 3_600_000_000
        tags = ("gdpr",), ()
        await store.write(
            [memory(f"memory {i}", time_us=base + i, tags=tags[i % 2]) for i in range(n)], None
        )
    finally:
        await db.close()


def test_lifecycle_cli_against_the_cluster(tmp_path: Path, pg_url: str) -> None:
    env = {"MEMTRACE_POSTGRES_URL": pg_url, "MEMTRACE_STORAGE_DEFAULT_BACKEND": "postgres"}
    data = tmp_path / "data"
    assert run(data, env, "org", "create", "source", "--id", "org_source1") == "org_source1"
    asyncio.run(_write(pg_url, "org_source1", 10))
    assert "30 days (org policy)" in run(data, env, "org", "retention", "source", "--days", "30")
    assert "30 days (org policy)" in run(data, env, "org", "retention", "org_source1")

    export = tmp_path / "source.ndjson"
    run(data, env, "export", "--org", "source", "-o", str(export))
    lines = export.read_bytes().splitlines()
    assert len(lines) == 10 and orjson.loads(lines[0])["content"] == "memory 0"
    # moved to another org id, as onto a new deployment; a second import adds nothing
    assert run(data, env, "org", "create", "target", "--id", "org_target1") == "org_target1"
    assert run(data, env, "import", "--org", "target", str(export)) == "imported 10"
    assert run(data, env, "import", "--org", "target", str(export)) == "imported 0"
    assert run(data, env, "forget", "--org", "target", "--tag", "gdpr") == "deleted 5"
    copy = tmp_path / "target.ndjson"
    run(data, env, "export", "--org", "target", "-o", str(copy))
    assert [orjson.loads(line)["content"] for line in copy.read_bytes().splitlines()] == [
        f"memory {i}" for i in range(1, 10, 2)
    ]
    audit = run(data, env, "audit", "--org", "target").splitlines()
    assert [line.split("\t")[2:4] for line in audit] == [
        ["forget", "5"],
        ["import", "0"],
        ["import", "10"],
    ]
    assert not (data / "memtrace.db").exists()  # nothing went to the SQLite metadata
