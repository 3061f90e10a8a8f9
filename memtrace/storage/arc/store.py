"""Arc backend: writes go to a durable local outbox, a shipper sends them to Arc, reads merge.

Read-your-writes: Arc shows rows only after its own flush, so every read overlays outbox rows
(pending, and shipped within ``arc.visibility_grace_s``) that match the query, deduplicated by
``id`` against what Arc returned. Dedup of new writes uses the outbox's local window index.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from memtrace.config import ArcSettings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import AgentMemoryStats, MemoryQuery, NewMemory, QueryPage, StoreHealth
from memtrace.storage.rows import (
    RECORD_COLUMNS,
    matches,
    record_to_row,
    row_to_record,
    sort_key,
)
from memtrace.storage.sqlite import Synchronous
from memtrace.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

_IDS_PER_QUERY = 200  # keeps each "id IN (…)" query far below Arc's 10,000-character limit


def arc_columns(records: Sequence[MemoryRecord]) -> dict[str, list[Any]]:
    """The fixed column set of one msgpack write (times in µs, importance always a float)."""
    columns: dict[str, list[Any]] = {name: [] for name in arc_sql.COLUMNS}
    for record in records:
        row = dict(zip(RECORD_COLUMNS, record_to_row(record), strict=True))
        for name in arc_sql.COLUMNS:
            columns[name].append(row[name])
    return columns


class ArcStore:
    """An org's memories in its Arc database, behind ``<data_dir>/orgs/<org>/arc_outbox.db``."""

    backend = "arc"

    def __init__(
        self,
        org_id: str,
        target: ArcTarget,
        outbox_path: Path,
        settings: ArcSettings,
        *,
        metrics: Metrics | None = None,
        synchronous: Synchronous = "FULL",
        dedup_window_us: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.org_id = org_id
        self.target = target
        self.settings = settings
        self.outbox = Outbox(outbox_path, org_id, synchronous=synchronous, lane=org_id)
        self.client = ArcClient(
            target.url,
            target.database,
            target.api_key,
            connect_timeout_s=settings.connect_timeout_s,
            query_timeout_s=settings.query_timeout_s,
            write_timeout_s=settings.write_timeout_s,
            transport=transport,
        )
        self._metrics = metrics
        self._dedup_window_us = dedup_window_us
        self._wakeup = asyncio.Event()
        self._closing = False
        self._shipper: asyncio.Task[None] | None = None
        self.consecutive_failures = 0

    async def open(self) -> None:
        await self.outbox.open()
        self._shipper = asyncio.create_task(self._ship_loop(), name=f"arc-shipper:{self.org_id}")

    async def close(self) -> None:
        """Stop shipping, ship what is pending for up to ``arc.shutdown_drain_s`` while Arc
        answers (what is left stays durable in the outbox for the next start), close files."""
        self._closing = True
        self._wakeup.set()
        if self._shipper is not None:
            self._shipper.cancel()
            await asyncio.gather(self._shipper, return_exceptions=True)
        if self._shipper is not None and self.settings.shutdown_drain_s > 0:
            try:
                async with asyncio.timeout(self.settings.shutdown_drain_s):
                    await self._drain()
            except TimeoutError:
                log.warning(
                    "arc outbox of %s not drained at shutdown; ships on next start", self.org_id
                )
        await self.client.close()
        await self.outbox.close()

    # -- writes -------------------------------------------------------------------------------

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        outcomes = await self.outbox.append(items, dedup_window_us, now_us())
        self._wakeup.set()
        return outcomes

    # -- shipping -----------------------------------------------------------------------------

    async def _ship_loop(self) -> None:
        interval = self.settings.flush_interval_ms / 1000
        seeded = False
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the wakeup fires, and close() then waited out the linger below.
            try:
                async with asyncio.timeout(interval):
                    await self._wakeup.wait()
                await asyncio.sleep(interval)  # linger: let a burst of writes share one batch
            except TimeoutError:
                pass
            self._wakeup.clear()
            if not seeded:
                seeded = await self._seed_dedup_index()
            while not self._closing and await self._ship_once():
                pass
            if loop.time() - last_prune > 5:
                last_prune = loop.time()
                await self._prune()

    async def _drain(self) -> None:
        """Ship batch after batch until the outbox is empty or Arc fails once."""
        failures = self.consecutive_failures
        while await self._ship_once() and self.consecutive_failures == failures:
            pass

    async def _ship_once(self) -> bool:
        """Ship one batch; True when there may be more to ship now."""
        try:
            batch = await self.outbox.pending_batch(self.settings.batch_size)
        except StorageUnavailable:
            log.warning("arc outbox of %s unreadable; retrying", self.org_id)
            await asyncio.sleep(self.settings.flush_interval_ms / 1000)
            return False
        if not batch:
            return False
        try:
            await self.client.write(self.target.measurement, arc_columns([r for _, _, r in batch]))
        except (ArcUnavailable, ArcRejected) as exc:
            # Never drop: back off (capped, jittered) and retry the same rows.
            self.consecutive_failures += 1
            if self._metrics is not None:
                self._metrics.arc_errors.labels("write").inc()
            delay = min(self.settings.retry_max_s, 0.05 * 2 ** min(self.consecutive_failures, 20))
            log.warning(
                "arc write for %s failed (%s); %d rows wait, retry in %.2fs",
                self.org_id,
                exc.message,
                len(batch),
                delay,
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            return True
        self.consecutive_failures = 0
        now = now_us()
        await self.outbox.mark_shipped([seq for seq, _, _ in batch], now)
        if self._metrics is not None:
            histogram = self._metrics.arc_ship_latency.labels(self.org_id)
            for _, enqueued_at, _ in batch:
                histogram.observe(max(0, now - enqueued_at) / 1e6)
        return len(batch) == self.settings.batch_size

    async def _prune(self) -> None:
        now = now_us()
        window = self._dedup_window_us or 0
        try:
            await self.outbox.prune(now - int(self.settings.visibility_grace_s * 1e6), now - window)
        except StorageUnavailable:
            log.warning("arc outbox of %s could not be pruned; will retry", self.org_id)

    async def _seed_dedup_index(self) -> bool:
        """Once per outbox file: load recent dedup keys already in Arc into the window index
        (a binding to a database that has data). One attempt; True once done."""
        if self._dedup_window_us is None or await self.outbox.get_state("seeded"):
            return True
        since = now_us() - self._dedup_window_us
        try:
            rows = await self.client.query(
                arc_sql.dedup_seed_sql(self.target.measurement, self.org_id, since)
            )
        except (ArcUnavailable, ArcRejected):
            return False
        await self.outbox.remember_keys([(str(k), int(t), str(i)) for k, t, i in rows])
        await self.outbox.set_state("seeded", "1")
        return True

    # -- reads --------------------------------------------------------------------------------

    async def _arc(self, sql: str) -> list[list[Any]]:
        try:
            return await self.client.query(sql)
        except ArcUnavailable as exc:
            if self._metrics is not None:
                self._metrics.arc_errors.labels("query").inc()
            raise StorageUnavailable(
                f"Arc backend of this org is unavailable ({exc.message}); writes are still "
                "accepted and queued, reads will work again when Arc is back"
            ) from None
        except ArcRejected as exc:
            if self._metrics is not None:
                self._metrics.arc_errors.labels("query").inc()
            raise StorageUnavailable(f"Arc backend of this org: {exc.message}") from None

    async def _overlay(self, q: MemoryQuery) -> list[MemoryRecord]:
        since = now_us() - int(self.settings.visibility_grace_s * 1e6)
        return [r for r in await self.outbox.overlay(since, q) if matches(r, q)]

    async def _present(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            sql = arc_sql.ids_present_sql(self.target.measurement, self.org_id, chunk)
            found.update(str(row[0]) for row in await self._arc(sql))
        return found

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        extra = await self._overlay(q)
        if q.content_chars is not None:
            extra = [replace(r, content=r.content[: q.content_chars]) for r in extra]
        measurement = self.target.measurement
        if not extra:
            sql = arc_sql.select_sql(measurement, q, limit=q.limit, offset=q.offset)
            return _unique([row_to_record(row) for row in await self._arc(sql)])
        # Enough Arc rows that, after merging and dropping duplicates, the page is complete.
        sql = arc_sql.select_sql(measurement, q, limit=q.offset + q.limit + len(extra), offset=0)
        merged = {r.id: r for r in (row_to_record(row) for row in await self._arc(sql))}
        for record in extra:
            merged.setdefault(record.id, record)
        ordered = sorted(merged.values(), key=sort_key, reverse=q.order == "desc")
        return ordered[q.offset : q.offset + q.limit]

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        # Arc scans on its own CPU, bounded by arc.query_timeout_s; the overlay is small.
        return QueryPage(await self.query(q))

    async def count(self, q: MemoryQuery) -> int:
        extra = await self._overlay(q)
        rows = await self._arc(arc_sql.count_sql(self.target.measurement, q))
        total = int(rows[0][0]) if rows else 0
        if extra:
            present = await self._present([r.id for r in extra])
            total += sum(1 for r in extra if r.id not in present)
        return total

    async def get(self, memory_id: str) -> MemoryRecord | None:
        local = await self.outbox.get(memory_id)
        if local is not None:
            return local
        rows = await self._arc(arc_sql.get_sql(self.target.measurement, self.org_id, memory_id))
        return row_to_record(rows[0]) if rows else None

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        sql = arc_sql.agent_stats_sql(self.target.measurement, self.org_id, agent_id, since)
        types: dict[str, int] = {}
        recent = errors = 0
        for memory_type, n, r, e in await self._arc(sql):
            types[str(memory_type)] = int(n)
            recent += int(r)
            errors += int(e)
        extra = await self._overlay(MemoryQuery(org_id=self.org_id, agent_id=agent_id))
        if extra:
            present = await self._present([r.id for r in extra])
            for record in extra:
                if record.id in present:
                    continue
                types[record.memory_type] = types.get(record.memory_type, 0) + 1
                if record.time >= since:
                    recent += 1
                    errors += record.event_type == "error"
        return AgentMemoryStats(
            memory_count=sum(types.values()),
            memories_since=recent,
            errors_since=errors,
            memory_types=dict(sorted(types.items())),
        )

    async def health(self) -> StoreHealth:
        try:
            pending = await self.outbox.pending_count()
        except Exception as exc:
            return StoreHealth(self.backend, False, 0, f"outbox unreadable: {exc}")
        if not await self.client.ping():
            return StoreHealth(self.backend, False, pending, "Arc is unreachable")
        return StoreHealth(self.backend, True, pending)


def _unique(records: list[MemoryRecord]) -> list[MemoryRecord]:
    """Drop repeated ids (a batch resent after a crash between Arc's 204 and our commit)."""
    seen: set[str] = set()
    out = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            out.append(record)
    return out
