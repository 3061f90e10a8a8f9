"""An outbox file written by an earlier memtrace (schema 1) is upgraded in place on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memtrace.domain.timestamps import now_us
from memtrace.storage.arc import outbox as outbox_module
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.base import MemoryQuery
from memtrace.storage.schema import schema_statements
from tests.storage.arc_support import memory


async def test_schema_1_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "arc_outbox.db"
    conn = sqlite3.connect(path)
    for statement in schema_statements(outbox_module._SCHEMA_V1):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    memory_id, at, key = "mem_01JZZZZZZZZZZZZZZZZZZZZZZZ", now_us() - 10, "k-from-0.3"
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO outbox (id, time, org_id, agent_id, memory_type, event_type, content, "
        "dedup_key, enqueued_at) VALUES (?, ?, 'org_a', 'crawler', 'episodic', 'general', "
        "'from 0.3', ?, ?)",
        (memory_id, at, key, now_us()),
    )
    conn.execute(
        "INSERT INTO dedup_index (dedup_key, time, id) VALUES (?, ?, ?)", (key, at, memory_id)
    )
    conn.commit()
    conn.close()

    old = Outbox(path, "org_a", synchronous="NORMAL")
    await old.open()
    try:
        counts = await old.counts()
        assert (counts.pending, counts.unverified, counts.parked) == (1, 0, 0)
        assert [r.id for r in await old.overlay(MemoryQuery(org_id="org_a"))] == [memory_id]
        # the old key counts as written now: a backfill resend stays caught for a window
        window = 3_600_000_000
        await old.prune_keys(now_us() + 10 * window, now_us() - window)
        (again,) = await old.append(
            [memory("from 0.3", time_us=at, dedup_key=key)],
            window,
            now_us(),
        )
        assert again.existing_id == memory_id
    finally:
        await old.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == outbox_module.SCHEMA_VERSION
