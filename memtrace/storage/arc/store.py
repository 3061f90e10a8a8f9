"""Arc backend: writes go to a durable local outbox, a shipper sends them to Arc, reads merge.

Read-your-writes: Arc shows rows only after its own flush, so every read overlays the outbox
rows that match the query (every row Arc has not yet been seen to hold), deduplicated by ``id``
against what Arc returned. Dedup of new writes uses the outbox's local window index, and Arc
for backfills older than what that index covers. Shipping and verifying:
:mod:`memtrace.storage.arc.shipper`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from memtrace.config import ArcSettings
from memtrace.domain.errors import InvalidInput, StorageUnavailable
from memtrace.domain.memory import MemoryRecord, WriteOutcome
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable
from memtrace.storage.arc.erase import ArcEraser
from memtrace.storage.arc.layouts import ArcLayout, LayoutProbe, dedup_entries
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.storage.arc.retention import expire_with_policy
from memtrace.storage.arc.shipper import Shipper, shown_by_arc
from memtrace.storage.arc.target import ArcTarget
from memtrace.storage.base import (
    CHANGE_SCAN,
    AgentMemoryStats,
    ChangePage,
    MemoryQuery,
    NewMemory,
    QueryPage,
    StoreHealth,
    TimelineBucket,
    TimelineGroup,
)
from memtrace.storage.erase import ErasureFinisher
from memtrace.storage.rows import after, matches, sort_key
from memtrace.storage.sqlite import Synchronous
from memtrace.storage.timeline import BucketCounts, origin_of
from memtrace.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

_OVERLAY_CHUNK = 500  # outbox rows read per step of a paged overlay
_CHANGES_CHUNK = 250  # change log entries whose records are read at once
_EXCLUDED_MAX = 150  # outbox rows a timeline leaves out of Arc's counts by id (one statement)


class ArcStore:
    """An org's memories in its Arc database, behind ``<data_dir>/orgs/<org>/arc_outbox.db``."""

    backend = "arc"

    def __init__(
        self,
        org_id: str,
        target: ArcTarget,
        outbox: Path | OutboxStore,
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
        # a path: the org's outbox file; cluster mode passes its PostgreSQL outbox
        self.outbox: OutboxStore = (
            Outbox(outbox, org_id, synchronous=synchronous, lane=org_id)
            if isinstance(outbox, Path)
            else outbox
        )
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
        # which column sets the measurement holds: memtrace's, the Go memtrace's, or both
        self.layouts = LayoutProbe(self.client, arc_sql.columns_sql(target.measurement))
        self.shipper = Shipper(
            org_id,
            self.outbox,
            self.client,
            target.measurement,
            settings,
            metrics=metrics,
            dedup_window_us=dedup_window_us,
            layouts=self.layouts,
        )
        self.purger: ErasureFinisher = self.outbox.purger()
        self._eraser = ArcEraser(
            org_id,
            self.outbox,
            self.client,
            target.measurement,
            self.shipper.lock,
            self.purger,
            self.layouts,
        )

    async def open(self) -> None:
        await self.outbox.open()
        self.shipper.start()

    async def close(self) -> None:
        """Stop shipping (after a bounded drain, see :meth:`Shipper.stop`), finish erasures,
        close files."""
        await self.shipper.stop()
        await self.purger.close()
        await self.client.close()
        await self.outbox.close()

    # -- writes -------------------------------------------------------------------------------

    async def write(
        self, items: Sequence[NewMemory], dedup_window_us: int | None
    ) -> list[WriteOutcome]:
        now = now_us()
        known = await self._older_keys(items, dedup_window_us, now)
        outcomes = await self.outbox.append(items, dedup_window_us, now, known)
        self.shipper.wake()
        return outcomes

    async def _older_keys(
        self, items: Sequence[NewMemory], window: int | None, now: int
    ) -> list[tuple[str, int, str]]:
        """Keys in Arc that backfills dated more than a window ago may collide with: the local
        index holds only the last two windows of memory time (and every key written in the
        last window), so for those writes Arc itself is asked (one query per ~250 keys). If
        Arc cannot answer, the write is still accepted, checked against the local index only."""
        if window is None:
            return []
        old = [item for item in items if item.time < now - window]
        if not old:
            return []
        keys = list(dict.fromkeys(item.dedup_key for item in old))
        since = min(item.time for item in old) - window
        until = max(item.time for item in old) + window
        found: list[tuple[str, int, str]] = []
        try:
            layout = await self.layouts.get()
            for chunk in arc_sql.literal_chunks(keys):
                sql = arc_sql.dedup_lookup_sql(
                    self.target.measurement, self.org_id, chunk, since, until, layout
                )
                found += dedup_entries(layout, await self.client.query(sql), derived=False)
        except (ArcUnavailable, ArcRejected) as exc:
            if self._metrics is not None:
                self._metrics.arc_errors.labels("query").inc()
            log.warning(
                "dedup of %d backfilled memories of %s checked locally only: %s",
                len(old),
                self.org_id,
                exc.message,
            )
        return found

    # -- reads --------------------------------------------------------------------------------

    async def _arc(self, sql: str) -> list[list[Any]]:
        try:
            return await self.client.query(sql)
        except (ArcUnavailable, ArcRejected) as exc:
            self.layouts.forget()
            raise self._read_failed(exc) from None

    async def _layout(self) -> ArcLayout:
        """Which column sets the measurement holds (docs/migrating-from-go.md)."""
        try:
            return await self.layouts.get()
        except (ArcUnavailable, ArcRejected) as exc:
            raise self._read_failed(exc) from None

    def _read_failed(self, exc: ArcUnavailable | ArcRejected) -> StorageUnavailable:
        if self._metrics is not None:
            self._metrics.arc_errors.labels("query").inc()
        if isinstance(exc, ArcUnavailable):
            return StorageUnavailable(
                f"Arc backend of this org is unavailable ({exc.message}); writes are still "
                "accepted and queued, reads will work again when Arc is back"
            )
        return StorageUnavailable(f"Arc backend of this org: {exc.message}")

    async def _overlay(self, q: MemoryQuery, need: int | None = None) -> list[MemoryRecord]:
        """Outbox rows matching ``q``; with ``need``, the first ``need`` in ``q``'s order
        (read in chunks, so a page never loads a large outbox whole)."""
        if need is None:
            return [r for r in await self.outbox.overlay(q) if matches(r, q)]
        found: list[MemoryRecord] = []
        chunk = max(need, _OVERLAY_CHUNK)
        while True:
            rows = await self.outbox.overlay(q, limit=chunk)
            found += [r for r in rows if matches(r, q)]
            if len(found) >= need or len(rows) < chunk:
                return found[:need]
            q = replace(q, after=(rows[-1].time, rows[-1].id))

    async def _present(self, records: Sequence[MemoryRecord]) -> set[str]:
        """Ids of overlay rows Arc already holds (so counts take them once)."""
        if not (await self._layout()).ours:
            return set()  # no row of ours has reached Arc yet
        try:
            return await shown_by_arc(
                self.client,
                self.target.measurement,
                self.org_id,
                [(r.id, r.time) for r in records],
            )
        except (ArcUnavailable, ArcRejected) as exc:
            raise self._read_failed(exc) from None

    async def query(self, q: MemoryQuery) -> list[MemoryRecord]:
        records = await self._query(q)
        if q.content_chars is None:
            return records
        chars = q.content_chars  # (the outbox's rows and Go rows arrive whole)
        return [
            r if len(r.content) <= chars else replace(r, content=r.content[:chars]) for r in records
        ]

    async def _query(self, q: MemoryQuery) -> list[MemoryRecord]:
        extra = await self._overlay(q, q.offset + q.limit)
        measurement = self.target.measurement
        layout = await self._layout()
        if q.after is not None and layout.go:
            return await self._page_after(q, extra, layout)
        if not extra:
            sql = arc_sql.select_sql(measurement, q, limit=q.limit, offset=q.offset, layout=layout)
            return _unique([layout.record(row) for row in await self._arc(sql)])
        # Enough Arc rows that, after merging and dropping duplicates, the page is complete.
        sql = arc_sql.select_sql(
            measurement, q, limit=q.offset + q.limit + len(extra), offset=0, layout=layout
        )
        merged = {r.id: r for r in (layout.record(row) for row in await self._arc(sql))}
        for record in extra:
            merged.setdefault(record.id, record)
        ordered = sorted(merged.values(), key=sort_key, reverse=q.order == "desc")
        return ordered[q.offset : q.offset + q.limit]

    async def _page_after(
        self, q: MemoryQuery, extra: list[MemoryRecord], layout: ArcLayout
    ) -> list[MemoryRecord]:
        """A page after a position where Go rows may be: their ids are derived in Python, so
        SQL bounds the time (the position's own microsecond read whole) and Python compares
        (time, id)."""
        assert q.after is not None
        at = q.after[0]
        low = q.since if q.since is not None else 0
        high = q.until if q.until is not None else 1 << 62
        parts: list[tuple[MemoryQuery, int]] = []
        if low <= at < high:  # the position's own microsecond, read whole
            parts.append((replace(q, after=None, offset=0, since=at, until=at + 1), 10_000))
        need = q.offset + q.limit + len(extra)
        if q.order == "asc" and at + 1 < high:
            parts.append((replace(q, after=None, offset=0, since=max(low, at + 1)), need))
        elif q.order == "desc" and low < at:
            parts.append((replace(q, after=None, offset=0, until=min(high, at)), need))
        rows: list[MemoryRecord] = []
        for part, limit in parts:
            sql = arc_sql.select_sql(
                self.target.measurement, part, limit=limit, offset=0, layout=layout
            )
            rows += [layout.record(row) for row in await self._arc(sql)]
        merged = {r.id: r for r in rows if after(r, q.after, q.order)}
        for record in extra:
            merged.setdefault(record.id, record)
        ordered = sorted(merged.values(), key=sort_key, reverse=q.order == "desc")
        return ordered[q.offset : q.offset + q.limit]

    async def query_page(self, q: MemoryQuery, budget_s: float) -> QueryPage:
        # Arc scans on its own CPU, bounded by arc.query_timeout_s; the overlay is small.
        return QueryPage(await self.query(q))

    async def count(self, q: MemoryQuery) -> int:
        extra = await self._overlay(q)
        layout = await self._layout()
        rows = await self._arc(arc_sql.count_sql(self.target.measurement, q, layout))
        total = int(rows[0][0]) if rows else 0
        if extra:
            present = await self._present(extra)
            total += sum(1 for r in extra if r.id not in present)
        return total

    async def delete(self, ids: Sequence[str]) -> list[str]:
        try:
            return await self._eraser.delete(ids)
        except ArcUnavailable as exc:
            raise self._read_failed(exc) from None

    async def insert_records(self, items: Sequence[NewMemory]) -> list[str]:
        """Append the memories not held yet (outbox or Arc) to the outbox, ids and times
        kept."""
        ids = list(dict.fromkeys(item.id for item in items if item.id))
        try:
            in_arc = {row.id for row in await self._eraser.find(ids)}
        except (ArcUnavailable, ArcRejected) as exc:
            raise self._read_failed(exc) from None
        held = set(await self.outbox.held(ids)) | in_arc
        fresh: dict[str, NewMemory] = {}
        for item in items:
            if item.id and item.id not in held and item.id not in fresh:
                fresh[item.id] = item
        if not fresh:
            return []
        outcomes = await self.outbox.append(list(fresh.values()), None, now_us())
        self.shipper.wake()
        return [o.record.id for o in outcomes if o.record is not None]

    async def expire(self, cutoff: int) -> int:
        """Arc's retention policy where it fits (:mod:`memtrace.storage.arc.retention`), then
        the outbox's rows older than the cutoff Arc used: those Arc may hold are either in
        the files it dropped (counted there) or in its write buffer (the row-by-row pass
        finds them once flushed); those never shipped are counted here."""
        async with self.shipper.lock:
            done = await expire_with_policy(
                self.client, self.target.measurement, self.org_id, cutoff, now_us()
            )
            if done is None:
                return 0
            deleted, used = done
            held = await self.outbox.older_than(used)
            if held:
                await self.outbox.remove([memory_id for memory_id, _ in held], [])
                self.purger.schedule()
        return deleted + sum(1 for _, shipped in held if not shipped)

    async def changes(self, after: int, q: MemoryQuery, limit: int) -> ChangePage:
        """The outbox's change log (positions in the outbox's commit order, kept after rows
        are shipped): records still in the outbox are read there, the others from Arc by id
        and time; erased memories are skipped; filters are checked in Python."""
        entries, head = await self.outbox.changes(after, CHANGE_SCAN)
        q = replace(q, after=None)
        found: list[tuple[int, MemoryRecord]] = []
        for start in range(0, len(entries), _CHANGES_CHUNK):
            chunk = entries[start : start + _CHANGES_CHUNK]
            records = await self._records([(memory_id, at) for _, memory_id, at in chunk])
            for seq, memory_id, _ in chunk:
                record = records.get(memory_id)
                if record is not None and matches(record, q):
                    found.append((seq, record))
                    if len(found) == limit:
                        return ChangePage(found, seq, complete=seq >= head)
        position = max(min(after + CHANGE_SCAN, head), after)
        return ChangePage(found, position, complete=position >= head)

    async def _records(self, wanted: Sequence[tuple[str, int]]) -> dict[str, MemoryRecord]:
        """Records by id: from the outbox first, then (what was shipped and verified since)
        from Arc. The outbox deletes a row only once Arc showed it, so reading the outbox
        first never misses one."""
        records = await self.outbox.records([memory_id for memory_id, _ in wanted])
        missing = {memory_id: at for memory_id, at in wanted if memory_id not in records}
        if not missing:
            return records
        layout = await self._layout()
        if not layout.ours:
            return records
        for chunk in arc_sql.literal_chunks(list(missing)):
            rows = [(memory_id, missing[memory_id]) for memory_id in chunk]
            sql = arc_sql.records_sql(self.target.measurement, self.org_id, rows, layout)
            for row in await self._arc(sql):
                record = layout.record(row)
                if record.id in missing:
                    records.setdefault(record.id, record)
        return records

    async def change_head(self) -> int:
        return await self.outbox.change_head()

    async def get(self, memory_id: str) -> MemoryRecord | None:
        local = await self.outbox.get(memory_id)
        if local is not None:
            return local
        layout = await self._layout()
        sql = arc_sql.get_sql(self.target.measurement, self.org_id, memory_id, layout)
        found = (layout.record(row) for row in await self._arc(sql))
        return next((record for record in found if record.id == memory_id), None)

    async def timeline(
        self, q: MemoryQuery, bucket_us: int, group_by: TimelineGroup | None
    ) -> list[TimelineBucket]:
        """Arc buckets and counts (DuckDB ``GROUP BY``) plus the outbox's rows.

        Up to ``_EXCLUDED_MAX`` outbox rows are counted here and left out of Arc's counts by
        id, so a row the shipper moves into Arc during the read is counted exactly once.
        Past that (a backlog), Arc is asked which of them it holds after counting, as
        :meth:`count` does: a row Arc starts to show between the two queries is then missed
        by that one read."""
        assert q.since is not None
        extra = await self._overlay(q)
        layout = await self._layout()
        counts = BucketCounts(origin_of(q.since, bucket_us), bucket_us)
        groupings: list[TimelineGroup | None] = []
        if group_by is None or group_by == "tag":
            groupings.append(None)
        if group_by is not None:
            groupings.append(group_by)
        exclude = [r.id for r in extra] if layout.ours and len(extra) <= _EXCLUDED_MAX else []
        statements = self._timeline_sql(q, counts, groupings, layout, exclude)
        if statements is None:  # the ids do not fit one statement: the backlog way
            exclude = []
            statements = self._timeline_sql(q, counts, groupings, layout, exclude)
            assert statements is not None
        for grouping, sql in zip(groupings, statements, strict=True):
            for index, value, n in await self._arc(sql):
                if grouping is None or grouping != "tag":
                    counts.total(int(index), n)
                if grouping is not None:
                    counts.group(int(index), str(value), n)
        if extra:
            present = set() if exclude else await self._present(extra)
            counts.records([r for r in extra if r.id not in present], group_by)
        return counts.buckets()

    def _timeline_sql(
        self,
        q: MemoryQuery,
        counts: BucketCounts,
        groupings: list[TimelineGroup | None],
        layout: ArcLayout,
        exclude: list[str],
    ) -> list[str] | None:
        """The timeline statements, or ``None`` when ``exclude`` makes one too long."""
        try:
            return [
                arc_sql.timeline_sql(
                    self.target.measurement, q, counts.origin, counts.width, g, layout, exclude
                )
                for g in groupings
            ]
        except InvalidInput:
            if exclude:
                return None
            raise

    async def agent_stats(self, agent_id: str, since: int) -> AgentMemoryStats:
        layout = await self._layout()
        sql = arc_sql.agent_stats_sql(self.target.measurement, self.org_id, agent_id, since, layout)
        types: dict[str, int] = {}
        recent = errors = 0
        for memory_type, n, r, e in await self._arc(sql):
            types[str(memory_type)] = int(n)
            recent += int(r)
            errors += int(e)
        extra = await self._overlay(MemoryQuery(org_id=self.org_id, agent_id=agent_id))
        if extra:
            present = await self._present(extra)
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
            counts = await self.outbox.counts()
        except Exception as exc:
            return StoreHealth(self.backend, False, 0, f"outbox unreadable: {exc}")
        detail = None
        if counts.parked:
            detail = (
                f"{counts.parked} memories parked: Arc refuses them (kept and readable; "
                f"memtrace org outbox {self.org_id})"
            )
        reachable = await self.client.ping()
        if not reachable:
            detail = "Arc is unreachable" + (f"; {detail}" if detail else "")
        return StoreHealth(
            self.backend,
            reachable,
            counts.pending,
            detail,
            outbox_unverified=counts.unverified,
            outbox_parked=counts.parked,
        )


def _unique(records: list[MemoryRecord]) -> list[MemoryRecord]:
    """Drop repeated ids (a batch resent after a crash between Arc's 204 and our commit)."""
    seen: set[str] = set()
    out = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            out.append(record)
    return out
