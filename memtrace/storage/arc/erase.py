"""Erasing an Arc-bound org's memories: in the local outbox and in Arc's files.

A memory of an Arc-bound org may be in the outbox (pending, or shipped and possibly still in
Arc's write buffer), in Arc's Parquet files, or both. A delete, with the shipper paused:

1. flush Arc's write buffer when one of the ids was shipped recently (Arc's delete only sees
   flushed rows), then ask Arc which of the ids it holds (with their times and dedup keys);
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

from memtrace.domain.errors import StorageUnavailable
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable
from memtrace.storage.arc.outbox import Outbox
from memtrace.storage.erase import Purger

IDS_PER_DELETE = 200  # ids per Arc request: each where stays far below 10,000 characters
_CONFIG_TTL_S = 60.0


class ArcEraser:
    """Deletes of one Arc-bound org (see the module doc)."""

    def __init__(
        self,
        org_id: str,
        outbox: Outbox,
        client: ArcClient,
        measurement: str,
        shipping: asyncio.Lock,
        purger: Purger,
    ) -> None:
        self.org_id = org_id
        self.outbox = outbox
        self.client = client
        self.measurement = measurement
        self._shipping = shipping
        self._purger = purger
        self._enabled_at = -_CONFIG_TTL_S

    async def delete(self, ids: Sequence[str]) -> list[str]:
        try:
            async with self._shipping:
                held = await self.outbox.held(ids)
                if any(held.values()):
                    await self.client.flush()
                in_arc = await self._in_arc(ids)
                if in_arc:
                    await self._require_delete_api()
                local = await self.outbox.remove(ids, [(k, t, i) for i, t, k in in_arc])
                if local or in_arc:
                    # rows pruned from the outbox long ago may still sit in its WAL
                    self._purger.schedule()
                if in_arc:
                    await self._delete_in_arc([(i, t) for i, t, _ in in_arc])
        except ArcRejected as exc:
            raise StorageUnavailable(
                f"Arc refused the delete ({exc.message})",
                hint="the Arc binding's token must be an admin token (memtrace org show-arc)",
            ) from None
        deleted = set(local) | {i for i, _, _ in in_arc}
        return [memory_id for memory_id in dict.fromkeys(ids) if memory_id in deleted]

    async def _in_arc(self, ids: Sequence[str]) -> list[tuple[str, int, str]]:
        """(id, time, dedup_key) of the ids Arc holds."""
        found: dict[str, tuple[str, int, str]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), IDS_PER_DELETE):
            chunk = unique[start : start + IDS_PER_DELETE]
            sql = arc_sql.rows_present_sql(self.measurement, self.org_id, chunk)
            for memory_id, at, key in await self.client.query(sql):
                found[str(memory_id)] = (str(memory_id), int(at), str(key))
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

    async def _delete_in_arc(self, rows: list[tuple[str, int]]) -> None:
        for attempt in range(2):
            ordered = sorted(rows, key=lambda row: row[1])
            for start in range(0, len(ordered), IDS_PER_DELETE):
                chunk = ordered[start : start + IDS_PER_DELETE]
                await self.client.delete(self.measurement, arc_sql.delete_where(self.org_id, chunk))
            remaining = {i for i, _, _ in await self._in_arc([i for i, _ in rows])}
            if not remaining:
                return
            # A row resent by an at-least-once retry may have landed in the buffer meanwhile.
            rows = [row for row in rows if row[0] in remaining]
            if attempt == 0:
                await self.client.flush()
        raise ArcUnavailable(
            f"Arc still shows {len(rows)} of the deleted memories; retry the delete"
        )
