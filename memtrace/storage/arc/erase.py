"""Erasing an Arc-bound org's memories: in the local outbox and in Arc's files.

A memory of an Arc-bound org may be in the outbox (pending, or shipped and possibly still in
Arc's write buffer), in Arc's Parquet files, or both. A delete, with the shipper paused:

1. flush Arc's write buffer when one of the ids was shipped recently (Arc's delete only sees
   flushed rows), then ask Arc which of the ids it holds (with their times and dedup keys;
   a row the Go memtrace wrote has no id column, so it is found by the time its derived id
   carries and named by the md5 that id comes from, :mod:`memtrace.storage.arc.layouts`);
2. check that Arc's delete API is on (``GET /api/v1/delete/config``) when Arc holds any, so a
   delete Arc cannot complete changes nothing;
3. remove the ids from the outbox and the dedup index (so nothing is shipped again);
4. delete them in Arc (``POST /api/v1/delete``, which rewrites the Parquet files that held
   them; 200 ids per request, bounded by their times), then ask again: what Arc still shows is
   deleted once more, else the call fails with 503 and the caller retries (deletes are
   idempotent; the SDK retries 503 itself).

Arc unreachable, or refusing (token without admin rights, ``delete.enabled = false``): 503
with the reason. docs/arc.md, "Deleting and retention", has the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.ids import memory_id_ms
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable
from memtrace.storage.arc.layouts import LayoutProbe, go_row_digest
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.storage.erase import ErasureFinisher

IDS_PER_DELETE = 200  # ids per Arc request: each where stays far below 10,000 characters
_CONFIG_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class ArcRow:
    """A memory Arc holds: its id, time and dedup key, and for a Go row the md5 naming it."""

    id: str
    time: int
    dedup_key: str
    go_digest: str | None = None


class ArcEraser:
    """Deletes of one Arc-bound org (see the module doc)."""

    def __init__(
        self,
        org_id: str,
        outbox: OutboxStore,
        client: ArcClient,
        measurement: str,
        shipping: asyncio.Lock,
        purger: ErasureFinisher,
        layouts: LayoutProbe,
    ) -> None:
        self.org_id = org_id
        self.outbox = outbox
        self.client = client
        self.measurement = measurement
        self._shipping = shipping
        self._purger = purger
        self._layouts = layouts
        self._enabled_at = -_CONFIG_TTL_S

    async def delete(self, ids: Sequence[str]) -> list[str]:
        try:
            async with self._shipping:
                held = await self.outbox.held(ids)
                if any(held.values()):
                    await self.client.flush()
                in_arc = await self.find(ids)
                if in_arc:
                    await self._require_delete_api()
                keys = [(row.dedup_key, row.time, row.id) for row in in_arc]
                local = await self.outbox.remove(ids, keys)
                if local or in_arc:
                    # rows that left the outbox long ago may still sit in its WAL
                    self._purger.schedule()
                if in_arc:
                    await self._delete_in_arc(in_arc)
        except ArcRejected as exc:
            raise StorageUnavailable(
                f"Arc refused the delete ({exc.message})",
                hint="the Arc binding's token must be an admin token (memtrace org show-arc)",
            ) from None
        deleted = set(local) | {row.id for row in in_arc}
        return [memory_id for memory_id in dict.fromkeys(ids) if memory_id in deleted]

    async def find(self, ids: Sequence[str]) -> list[ArcRow]:
        """The memories among ``ids`` that Arc holds (memtrace's rows and the Go memtrace's)."""
        layout = await self._layouts.get()
        unique = list(dict.fromkeys(ids))
        found: dict[str, ArcRow] = {}
        if layout.ours:
            for start in range(0, len(unique), IDS_PER_DELETE):
                chunk = unique[start : start + IDS_PER_DELETE]
                sql = arc_sql.rows_present_sql(self.measurement, self.org_id, chunk)
                for memory_id, at, key in await self.client.query(sql):
                    found[str(memory_id)] = ArcRow(str(memory_id), int(at), str(key))
        rest: list[tuple[int, str]] = []
        for memory_id in unique:
            ms = memory_id_ms(memory_id)
            if memory_id not in found and ms is not None:
                rest.append((ms, memory_id))
        rest.sort()
        if layout.go and rest:
            for start in range(0, len(rest), IDS_PER_DELETE):
                span = rest[start : start + IDS_PER_DELETE]
                wanted = {memory_id for _, memory_id in span}
                since, until = span[0][0] * 1000, (span[-1][0] + 1) * 1000
                sql = arc_sql.go_rows_sql(self.measurement, self.org_id, since, until, layout)
                for row in await self.client.query(sql):
                    record = layout.record(row)
                    if record.id in wanted:
                        digest = go_row_digest(row)
                        found[record.id] = ArcRow(record.id, record.time, record.dedup_key, digest)
        return list(found.values())

    async def _require_delete_api(self) -> None:
        if time.monotonic() - self._enabled_at < _CONFIG_TTL_S:
            return
        config = await self.client.delete_config()
        if not config.get("enabled"):
            raise StorageUnavailable(
                "Arc's delete API is off on this org's Arc server, so memories stored there "
                "cannot be erased; nothing was deleted",
                hint="set delete.enabled = true in arc.toml",
            )
        self._enabled_at = time.monotonic()

    async def _delete_in_arc(self, rows: list[ArcRow]) -> None:
        layout = await self._layouts.get()
        for attempt in range(2):
            ours = sorted((r for r in rows if r.go_digest is None), key=lambda r: r.time)
            go = sorted((r for r in rows if r.go_digest is not None), key=lambda r: r.time)
            for start in range(0, len(ours), IDS_PER_DELETE):
                chunk = [(r.id, r.time) for r in ours[start : start + IDS_PER_DELETE]]
                await self.client.delete(self.measurement, arc_sql.delete_where(self.org_id, chunk))
            for start in range(0, len(go), IDS_PER_DELETE):
                pairs = [(r.go_digest or "", r.time) for r in go[start : start + IDS_PER_DELETE]]
                where = arc_sql.go_delete_where(self.org_id, pairs, layout)
                await self.client.delete(self.measurement, where)
            remaining = {r.id for r in await self.find([r.id for r in rows])}
            if not remaining:
                return
            # A row resent by an at-least-once retry may have landed in the buffer meanwhile.
            rows = [r for r in rows if r.id in remaining]
            if attempt == 0:
                await self.client.flush()
        raise ArcUnavailable(f"Arc still shows {len(rows)} of the deleted memories; retry")
