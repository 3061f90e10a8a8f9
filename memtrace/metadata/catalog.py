"""The running server's async view of the metadata DB (agents, sessions, orgs, keys).

Agent auto-registration is awaited (a new agent exists before its first memory is
acknowledged), but ``last_active_at`` updates of known agents are coalesced in memory and
flushed every tick (see :class:`memtrace.runtime.Runtime`): a memory write does not pay a second
fsync. Reads overlay the pending activity, so the process itself never shows a stale value.
Which agents are known is remembered for the ``limits.agent_cache_size`` most recently active
ones only: an agent that fell out is registered again on its next write (an upsert, the cost of
one metadata write), so memory stays bounded however many agents an org ever had.

Reads of an org's rows queue on the org's read lane, the server's other reads (the health
ping, listings) on the system lane, so they never wait behind a tenant; the admin watch (keys,
orgs, bindings) has a thread and a connection of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from memtrace.auth.keys import ApiKeyRecord
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.ids import new_session_id
from memtrace.domain.lifecycle import AuditEntry, RetentionPolicy
from memtrace.metadata import bindings, goimport
from memtrace.metadata import feed as feeds
from memtrace.metadata import lifecycle as lc
from memtrace.metadata import sqlite as md
from memtrace.metadata.activity import AGENT_CACHE_SIZE, AgentActivity
from memtrace.metadata.base import AdminSnapshot
from memtrace.metadata.bindings import ArcBinding
from memtrace.metadata.goimport import LegacyArc
from memtrace.metadata.records import AgentRow, Org, SessionRow
from memtrace.metadata.schema import migrate
from memtrace.storage.readpool import SYSTEM_LANE
from memtrace.storage.sqlite import SQLiteDatabase, Synchronous, connect, storage_error

T = TypeVar("T")


class Catalog:
    """Metadata operations for the server (:class:`~memtrace.metadata.base.MetadataStore`) on one
    group-committing SQLite database."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        agent_cache_size: int = AGENT_CACHE_SIZE,
    ) -> None:
        self.db = SQLiteDatabase(
            path, setup=migrate, synchronous=synchronous, lane=SYSTEM_LANE, max_readers=4
        )
        self.activity = AgentActivity(agent_cache_size)
        self._agents_deleted = 0  # the metadata DB's count when the known agents were last valid
        # The admin watch (data_version, keys, orgs, bindings) has a connection and a thread of
        # its own: it never queues behind tenants' reads in the shared reader pool, so a key
        # revoked while a tenant keeps every reader busy is still refused within 2 seconds.
        self._watch: sqlite3.Connection | None = None
        self._watch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metadata-watch")
        self._watch_version = -1

    async def open(self) -> None:
        await self.db.open()
        self._watch = await self._on_watch_thread(lambda: connect(self.db.path, readonly=True))
        await self.changed()

    async def close(self) -> None:
        await self.flush_activity()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._watch_thread.shutdown(wait=False)
        await self.db.close()

    async def _on_watch_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._watch_thread, fn)

    async def changed(self) -> bool:
        """True when another connection (any process, or our writer) committed since last call."""
        watch = self._watch
        if watch is None:
            return False
        version = await self._on_watch_thread(
            lambda: int(watch.execute("PRAGMA data_version").fetchone()[0])
        )
        if version == self._watch_version:
            return False
        self._watch_version = version
        return True

    async def admin_snapshot(self) -> AdminSnapshot:
        """Keys, orgs and Arc bindings as of one read transaction, on the watch thread."""
        watch = self._watch
        if watch is None:
            raise StorageUnavailable("the metadata DB is closed")

        def read() -> AdminSnapshot:
            watch.execute("BEGIN")
            try:
                return AdminSnapshot(
                    md.list_keys(watch),
                    md.list_orgs(watch),
                    bindings.list_bindings(watch),
                    md.read_counter(watch, md.AGENTS_DELETED),
                )
            except sqlite3.Error as exc:
                raise storage_error(exc) from None
            finally:
                watch.execute("ROLLBACK")

        snapshot = await self._on_watch_thread(read)
        if snapshot.agents_deleted != self._agents_deleted:
            # An agent was deleted, maybe by another process (another worker of the same
            # server): forget which agents exist, so the next write registers its agent again.
            self._agents_deleted = snapshot.agents_deleted
            self.activity.forget_known()
        return snapshot

    async def ping(self) -> None:
        """Raise unless the metadata DB answers a query."""
        await self.db.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def bootstrap(
        self, *, default_org: bool, admin_key: ApiKeyRecord | None, now: int
    ) -> bool:
        """See :func:`memtrace.metadata.sqlite.bootstrap`."""
        return await self.db.write(
            lambda conn: md.bootstrap(conn, default_org=default_org, admin_key=admin_key, now=now)
        )

    async def adopt_legacy_arc(self, legacy: LegacyArc, now: int) -> bool:
        """See :func:`memtrace.metadata.goimport.adopt_legacy_arc`."""
        return await self.db.write(lambda conn: goimport.adopt_legacy_arc(conn, legacy, now))

    # -- orgs, keys and bindings --------------------------------------------------------------

    async def list_orgs(self) -> list[Org]:
        return await self.db.read(md.list_orgs)

    async def list_keys(self, org_id: str | None = None) -> list[ApiKeyRecord]:
        return await self.db.read(lambda conn: md.list_keys(conn, org_id))

    # -- admin (:class:`~memtrace.metadata.base.MetadataAdmin`) -------------------------------

    async def find_org(self, id_or_name: str) -> Org | None:
        return await self.db.read(lambda conn: md.find_org(conn, id_or_name))

    async def create_org(self, org_id: str, name: str, now: int) -> Org:
        return await self.db.write(lambda conn: md.insert_org(conn, org_id, name, now))

    async def delete_org(self, org_id: str) -> None:
        await self.db.write(lambda conn: md.delete_org(conn, org_id))

    async def add_key(self, record: ApiKeyRecord) -> None:
        await self.db.write(lambda conn: md.insert_key(conn, record))

    async def revoke_key(self, key_id: str, now: int) -> ApiKeyRecord:
        return await self.db.write(lambda conn: md.revoke_key(conn, key_id, now))

    async def get_binding(self, org_id: str) -> ArcBinding | None:
        return await self.db.read(lambda conn: bindings.get_binding(conn, org_id))

    async def put_binding(
        self,
        org_id: str,
        *,
        url: str,
        database: str,
        measurement: str,
        api_key: str | None,
        now: int,
        environ: Mapping[str, str] | None = None,
    ) -> ArcBinding:
        # validated and encrypted here: the writer thread must not raise ConfigError
        url, enc = bindings.prepare(org_id, url, database, measurement, api_key, environ)
        return await self.db.write(
            lambda conn: bindings.store_binding(conn, org_id, url, database, measurement, enc, now)
        )

    async def remove_binding(self, org_id: str) -> None:
        await self.db.write(lambda conn: bindings.remove_binding(conn, org_id))

    def forget_org(self, org_id: str) -> None:
        """Drop caches of an org that was deleted."""
        self.activity.forget_org(org_id)

    def known_agents(self) -> int:
        """How many agents are remembered as registered (bounded by the cache size)."""
        return self.activity.known()

    # -- agent activity (:mod:`memtrace.metadata.activity`) -----------------------------------

    async def note_activity(self, org_id: str, agent_ids: Iterable[str], at: int) -> None:
        """Register unknown agents (awaited) and record activity of known ones (coalesced)."""
        unknown = self.activity.note(org_id, agent_ids, at)
        if unknown:
            await self.db.write(lambda conn: md.touch_agents(conn, org_id, unknown))
            self.activity.remember(org_id, unknown)

    async def flush_activity(self) -> None:
        """Persist coalesced ``last_active_at`` updates."""
        by_org = self.activity.take()
        if not by_org:
            return

        def flush(conn: sqlite3.Connection) -> None:
            for org_id, activity in by_org.items():
                md.touch_agents(conn, org_id, activity)

        await self.db.write(flush)

    # -- agents -------------------------------------------------------------------------------

    async def register_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config: dict[str, Any] | None,
        now: int,
        name: str | None = None,
    ) -> AgentRow:
        row = await self.db.write(
            lambda conn: md.insert_agent(conn, org_id, agent_id, description, config, now, name)
        )
        self.activity.remember(org_id, (agent_id,))
        return row

    async def get_agent(self, org_id: str, agent_id: str) -> AgentRow | None:
        row = await self.db.read(lambda conn: md.get_agent(conn, org_id, agent_id), lane=org_id)
        return self.activity.overlay(row) if row else None

    async def list_agents(self, org_id: str, limit: int, offset: int) -> list[AgentRow]:
        rows = await self.db.read(
            lambda conn: md.list_agents(conn, org_id, limit, offset), lane=org_id
        )
        return [self.activity.overlay(row) for row in rows]

    async def delete_agent(self, org_id: str, agent_id: str) -> None:
        self.activity.forget_agent(org_id, agent_id)
        await self.db.write(lambda conn: md.delete_agent(conn, org_id, agent_id))

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(
        self, org_id: str, agent_id: str, metadata: dict[str, Any] | None, now: int
    ) -> SessionRow:
        await self.note_activity(org_id, (agent_id,), now)
        row = SessionRow(new_session_id(), org_id, agent_id, "active", metadata, now, now, None)
        await self.db.write(lambda conn: md.insert_session(conn, row))
        return row

    async def get_session(self, org_id: str, session_id: str) -> SessionRow | None:
        return await self.db.read(
            lambda conn: md.get_session(conn, org_id, session_id), lane=org_id
        )

    async def list_sessions(
        self, org_id: str, agent_id: str | None, status: str | None, limit: int, offset: int
    ) -> list[SessionRow]:
        return await self.db.read(
            lambda conn: md.list_sessions(conn, org_id, agent_id, status, limit, offset),
            lane=org_id,
        )

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata: dict[str, Any] | None,
        now: int,
    ) -> SessionRow:
        return await self.db.write(
            lambda conn: md.update_session(conn, org_id, session_id, status, metadata, now)
        )

    async def session_counts(self, org_id: str, agent_id: str) -> tuple[int, int]:
        return await self.db.read(
            lambda conn: md.session_counts(conn, org_id, agent_id), lane=org_id
        )

    async def delete_session(self, org_id: str, session_id: str) -> bool:
        return await self.db.write(lambda conn: lc.delete_session(conn, org_id, session_id))

    # -- feed cursors (docs/feed.md) ----------------------------------------------------------

    async def get_feed_cursor(self, org_id: str, reader: str) -> int | None:
        return await self.db.read(lambda conn: feeds.get_cursor(conn, org_id, reader), lane=org_id)

    async def confirm_feed_cursor(self, org_id: str, reader: str, position: int, now: int) -> int:
        return await self.db.write(lambda conn: feeds.confirm(conn, org_id, reader, position, now))

    async def advance_feed_cursor(
        self, org_id: str, reader: str, expected: int, position: int, now: int
    ) -> bool:
        return await self.db.write(
            lambda conn: feeds.advance(conn, org_id, reader, expected, position, now)
        )

    # -- data lifecycle -----------------------------------------------------------------------

    async def get_retention(self, org_id: str) -> RetentionPolicy | None:
        return await self.db.read(lambda conn: lc.get_retention(conn, org_id), lane=org_id)

    async def list_retention(self) -> dict[str, RetentionPolicy]:
        return await self.db.read(lc.list_retention)

    async def put_retention(self, org_id: str, policy: RetentionPolicy, now: int) -> None:
        await self.db.write(lambda conn: lc.put_retention(conn, org_id, policy, now))

    async def delete_retention(self, org_id: str) -> bool:
        return await self.db.write(lambda conn: lc.delete_retention(conn, org_id))

    async def record_audit(self, entry: AuditEntry) -> None:
        await self.db.write(lambda conn: lc.append_audit(conn, entry))

    async def list_audit(
        self, org_id: str, *, limit: int = 100, since: int | None = None
    ) -> list[AuditEntry]:
        return await self.db.read(
            lambda conn: lc.list_audit(conn, org_id, limit=limit, since=since), lane=org_id
        )
