"""What only the PostgreSQL store has to get right (the rest is the contract suite): contents
PostgreSQL text cannot hold, case folding beyond ASCII, monthly partitions made on demand (a
backfill into an old month, a month dropped for retention), schema versions, and concurrent
exact dedup inside one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from memtrace.config import PostgresSettings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.timestamps import now_us
from memtrace.storage.base import MemoryQuery
from memtrace.storage.postgres.db import PgDatabase
from memtrace.storage.postgres.schema import decode_text, encode_text
from memtrace.storage.postgres.store import PostgresStore
from tests.storage.arc_support import memory

ORG = "org_pg"
HOUR = 3_600_000_000


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    db = PgDatabase(PostgresSettings(url=pg_url))
    await db.open()
    pg_store = PostgresStore(db, ORG)
    await pg_store.open()
    yield pg_store
    await db.close()


def test_text_escaping_round_trips() -> None:
    for text in ["plain", "a\x00b", "\ufffe", "\ufffe0", "\x00\ufffe\x00", "end\ufffe"]:
        assert decode_text(encode_text(text)) == text
    assert encode_text("plain") == "plain"  # contents without NUL or U+FFFE are stored as is


async def test_nul_and_non_ascii_contents(store: PostgresStore) -> None:
    t = now_us() - HOUR
    items = [
        memory("before\x00after NUL", time_us=t),
        memory("Ünïcödé ÉTÉ café", time_us=t + 1),
        memory("İstanbul", time_us=t + 2),
        memory("percent 100% and under_score", time_us=t + 3),
    ]
    records = [o.record for o in await store.write(items, HOUR)]
    assert await store.get(records[0].id) == records[0]  # type: ignore[union-attr]

    async def found(needle: str) -> list[str]:
        rows = await store.query(MemoryQuery(org_id=ORG, content_contains=needle))
        return [r.content for r in rows]

    assert await found("e\x00a") == ["before\x00after NUL"]
    assert await found("été") == ["Ünïcödé ÉTÉ café"]  # folded like str.lower
    assert await found("istanbul") == []  # "İ".lower() is "i̇" in Python: no match
    assert await found("i̇stanbul") == ["İstanbul"]
    assert await found("0%") == ["percent 100% and under_score"]  # LIKE wildcards are literal
    assert await found("r_s") == ["percent 100% and under_score"]
    assert await found("x_s") == []


async def test_backfill_creates_its_month_and_a_dropped_month_comes_back(
    store: PostgresStore,
) -> None:
    old = int(datetime(2019, 3, 15, tzinfo=UTC).timestamp() * 1_000_000)
    first = await store.write([memory("from 2019", time_us=old)], HOUR)
    assert first[0].record is not None
    async with store.db.connection() as conn:
        assert await conn.fetchval("SELECT to_regclass('memories_p201903') IS NOT NULL")
        await conn.execute("DROP TABLE memories_p201903")  # retention drops the month
    again = await store.write([memory("from 2019 again", time_us=old + 5)], HOUR)
    assert again[0].record is not None  # the month was created again, the write succeeded
    rows = await store.query(MemoryQuery(org_id=ORG, until=old + HOUR))
    assert [r.content for r in rows] == ["from 2019 again"]


async def test_concurrent_batches_dedup_exactly(store: PostgresStore) -> None:
    """Eight writers send overlapping batches at once: each key is stored once, and every
    duplicate names the stored id."""
    t = now_us() - HOUR
    base = [memory(f"m{i}", time_us=t + i, dedup_key=f"key-{i}") for i in range(60)]
    batches = [[replace(m, content=f"{m.content}/{w}") for m in base[w * 5 :]] for w in range(8)]
    results = await asyncio.gather(*(store.write(batch, HOUR) for batch in batches))
    stored = {o.record.dedup_key: o.record.id for r in results for o in r if o.record}
    assert len(stored) == 60
    for outcomes, batch in zip(results, batches, strict=True):
        for outcome, item in zip(outcomes, batch, strict=True):
            assert (outcome.record.id if outcome.record else outcome.existing_id) == stored[
                item.dedup_key
            ]
    assert await store.count(MemoryQuery(org_id=ORG)) == 60


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    db = PgDatabase(PostgresSettings(url=pg_url))
    await db.open()
    try:
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE memtrace_schema SET version = 99 WHERE component = 'memories'"
            )
        with pytest.raises(StorageUnavailable, match="newer than this memtrace"):
            await db.migrate("memories", ("SELECT 1",))
    finally:
        await db.close()


async def test_a_delete_vacuums_exactly_the_partitions_it_touched(store: PostgresStore) -> None:
    """Erasure: the rows go in one transaction (with the agent counters), then the partitions
    they were in are vacuumed (their dead tuples reclaimed), and no other partition is."""
    old = int(datetime(2024, 1, 15, tzinfo=UTC).timestamp() * 1_000_000)
    items = [memory("secret of january", time_us=old), memory("kept", time_us=now_us() - HOUR)]
    records = [o.record for o in await store.write(items, None)]
    assert records[0] is not None
    assert await store.delete([records[0].id, "mem_unknown"]) == [records[0].id]
    await store.vacuum.idle()
    assert store.vacuum.runs == 1
    async with store.db.connection() as conn:
        vacuumed = {
            str(name)
            for (name,) in await conn.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE relname LIKE 'memories_p%' "
                "AND vacuum_count > 0"
            )
        }
        dead = await conn.fetchval("SELECT count(*) FROM memories WHERE content LIKE '%secret%'")
    assert vacuumed == {"memories_p202401"}
    assert dead == 0
    stats = await store.agent_stats("crawler", 0)
    assert stats.memory_count == 1 and stats.memory_types == {"episodic": 1}


async def test_the_pool_holds_at_most_pool_max_connections(pg_url: str) -> None:
    """20 requests at once on a pool of 3 share its 3 server connections; a request that cannot
    get one within acquire_timeout_s is a clear 503, not a new connection."""
    settings = PostgresSettings(url=pg_url, pool_min=3, pool_max=3, acquire_timeout_s=0.3)
    db = PgDatabase(settings, presence=False)
    await db.open()
    seen: list[int] = []

    async def hold(seconds: float) -> None:
        async with db.connection() as conn:
            seen.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'memtrace' AND datname = current_database()"
                )
            )
            await conn.execute(f"SELECT pg_sleep({seconds})")

    try:
        results = await asyncio.gather(*(hold(1.0) for _ in range(20)), return_exceptions=True)
        assert seen and max(seen) <= 3
        refused = [r for r in results if isinstance(r, BaseException)]
        assert refused and all(isinstance(r, StorageUnavailable) for r in refused)
        await hold(0)  # and serves again once they are back
    finally:
        await db.close()
