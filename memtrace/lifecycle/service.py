"""The data lifecycle of one org: delete, forget, export, import and retention, built once over
the storage protocol so every backend behaves alike (docs/api.md, "Data lifecycle").

Every operation that removes or adds memories in bulk works in bounded batches (at most
``retention.batch_size`` memories per store call, walked by position), so a forget of a
million memories holds the store's write lock for one short batch at a time, and records
itself in the audit log: who (the API key's id, ``cli`` or ``retention``), when, with which
filter, how many.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from memtrace.domain.errors import InvalidInput, NotFound
from memtrace.domain.lifecycle import AuditEntry, RetentionPolicy
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import MEMORY_TYPES, ExportParams, ForgetRequest, ForgetResult
from memtrace.domain.timestamps import now_us
from memtrace.domain.windows import parse_window
from memtrace.metadata.base import MetadataStore
from memtrace.service import MemoryService, filters_query, match_query
from memtrace.storage.base import MemoryQuery, MemoryStore, NewMemory

log = logging.getLogger(__name__)

EXPORT_PAGE = 1000  # memories read per step of an export stream


@dataclass(frozen=True, slots=True)
class RuleReport:
    """What one retention rule removes (dry run) or removed."""

    memory_types: tuple[str, ...]
    cutoff: int
    count: int


class Lifecycle:
    """Lifecycle operations of one org (its :class:`MemoryService`'s store and catalog), on
    behalf of ``actor`` (recorded in the audit log)."""

    def __init__(self, service: MemoryService, actor: str) -> None:
        self.org_id = service.org_id
        self.store: MemoryStore = service.store
        self.catalog: MetadataStore = service.catalog
        self.settings = service.settings
        self.metrics = service.metrics
        self.actor = actor
        self.batch = service.settings.retention.batch_size

    async def _audit(
        self, action: str, count: int, filters: dict[str, Any] | None, detail: str | None = None
    ) -> None:
        entry = AuditEntry(self.org_id, now_us(), self.actor, action, count, filters, detail)
        await self.catalog.record_audit(entry)

    # -- delete and forget --------------------------------------------------------------------

    async def delete_memory(self, memory_id: str) -> None:
        """Erase one memory.

        Raises:
            NotFound: no such memory in this org.
        """
        if not await self.store.delete([memory_id]):
            raise NotFound(f"memory {memory_id!r} not found")
        self.metrics.memories_deleted.labels("delete").inc()
        await self._audit("delete", 1, {"id": memory_id})

    async def forget(self, request: ForgetRequest) -> ForgetResult:
        """Erase every memory matching the filters (``dry_run``: only count them).

        Raises:
            InvalidInput: no filter at all (forgetting a whole org is ``org delete --purge``),
                or ``delete_agent``/``delete_session`` without the id it names.
        """
        filters = request.filters()
        if not filters:
            raise InvalidInput(
                "filter: at least one filter is required (agent_id, session_id, memory_types, "
                "event_types, tags, content_contains, since, until)",
                hint="to erase a whole org, an administrator runs: memtrace org delete ORG --purge",
            )
        if request.delete_agent and not request.agent_id:
            raise InvalidInput("delete_agent: needs agent_id")
        if request.delete_session and not request.session_id:
            raise InvalidInput("delete_session: needs session_id")
        since, until = parse_window(request.since, request.until, now_us())
        query = match_query(self.org_id, request, since, until)
        if request.dry_run:
            return ForgetResult(matched=await self.store.count(query))
        deleted = 0
        try:
            deleted = await self._delete_matching(query, "forget")
        finally:
            await self._audit("forget", deleted, filters)
        result = ForgetResult(deleted=deleted)
        if request.delete_agent and request.agent_id:
            found = await self.catalog.get_agent(self.org_id, request.agent_id) is not None
            await self.catalog.delete_agent(self.org_id, request.agent_id)
            result.agent_deleted = found
            await self._audit("delete_agent", int(found), {"agent_id": request.agent_id})
        if request.delete_session and request.session_id:
            gone = await self.catalog.delete_session(self.org_id, request.session_id)
            result.session_deleted = gone
            await self._audit("delete_session", int(gone), {"session_id": request.session_id})
        return result

    async def _delete_matching(self, query: MemoryQuery, reason: str) -> int:
        """Delete what matches, oldest first, one batch per store call; the count deleted."""
        q = replace(query, order="asc", limit=self.batch, offset=0)
        deleted = 0
        pause = self.settings.retention.batch_pause_ms / 1000
        while True:
            rows = await self.store.query(q)
            if not rows:
                return deleted
            gone = await self.store.delete([r.id for r in rows])
            deleted += len(gone)
            self.metrics.memories_deleted.labels(reason).inc(len(gone))
            if len(rows) < self.batch:
                return deleted
            q = replace(q, after=(rows[-1].time, rows[-1].id))
            if pause:
                await asyncio.sleep(pause)  # let queued writes through between batches

    # -- export and import --------------------------------------------------------------------

    async def export(self, params: ExportParams) -> AsyncIterator[MemoryRecord]:
        """Every memory matching the filters, walked by position in pages (constant memory)."""
        q = self._export_query(params)
        while True:
            rows = await self.store.query(q)
            for row in rows:
                yield row
            if len(rows) < EXPORT_PAGE:
                return
            q = replace(q, after=(rows[-1].time, rows[-1].id))

    async def export_count(self, params: ExportParams) -> int:
        """How many memories an export with these filters holds now (for a progress bar)."""
        return await self.store.count(self._export_query(params))

    def _export_query(self, params: ExportParams) -> MemoryQuery:
        since, until = parse_window(params.since, params.until, now_us())
        return filters_query(
            self.org_id, params, since=since, until=until, limit=EXPORT_PAGE, order=params.order
        )

    async def import_batch(self, items: Sequence[NewMemory]) -> int:
        """Store validated memories of an export (with their ids; times kept; existing ids
        skipped); their agents are registered. Returns how many were new."""
        if not items:
            return 0
        agents = dict.fromkeys(item.agent_id for item in items)
        await self.catalog.note_activity(self.org_id, agents, now_us())
        return len(await self.store.insert_records(items))

    async def record_import(self, imported: int, lines: int, source: str) -> None:
        """One audit entry per imported file."""
        await self._audit(
            "import", imported, None, f"{source}: {lines} lines, {lines - imported} already there"
        )

    # -- retention ----------------------------------------------------------------------------

    async def retention_report(self, policy: RetentionPolicy, now: int) -> list[RuleReport]:
        """What a sweep with ``policy`` would delete now, per rule (nothing is deleted)."""
        return [
            RuleReport(types, cutoff, await self.store.count(self._expired(types, cutoff)))
            for types, cutoff in policy.rules(now)
        ]

    async def apply_retention(self, policy: RetentionPolicy, now: int) -> int:
        """Delete what ``policy`` says has expired: first the backend's bulk way where every
        type expires (Arc's retention policies), then row by row, in batches. Returns how
        many memories went."""
        rules = policy.rules(now)
        done: list[RuleReport] = []
        bulk = 0
        covered = {t for types, _ in rules for t in types}
        if rules and covered == set(MEMORY_TYPES):
            bulk = await self.store.expire(min(cutoff for _, cutoff in rules))
        try:
            for types, cutoff in rules:
                count = await self._delete_matching(self._expired(types, cutoff), "retention")
                done.append(RuleReport(types, cutoff, count))
        finally:
            total = bulk + sum(r.count for r in done)
            if total:
                self.metrics.retention_deleted.labels(self.org_id).inc(total)
                if bulk:
                    self.metrics.memories_deleted.labels("retention").inc(bulk)
                await self._audit("retention", total, policy.to_json(), _describe(done, bulk))
        return total

    def _expired(self, types: tuple[str, ...], cutoff: int) -> MemoryQuery:
        every = set(types) == set(MEMORY_TYPES)  # no type filter: the plain time index
        return MemoryQuery(
            org_id=self.org_id, memory_types=() if every else types, until=cutoff, order="asc"
        )


def _describe(rules: list[RuleReport], bulk: int) -> str:
    parts = [f"{'/'.join(r.memory_types)}: {r.count}" for r in rules]
    if bulk:
        parts.insert(0, f"whole files in Arc: {bulk}")
    return "; ".join(parts)
