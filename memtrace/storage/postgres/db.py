"""PostgreSQL access for one process: a bounded asyncpg pool, versioned migrations, clean errors.

One :class:`PgDatabase` per process is shared by the metadata, every org's memory store and the
Arc outboxes, so a replica never holds more than ``postgres.pool_max`` connections (plus the
one :mod:`memtrace.storage.postgres.events` keeps for change notifications).

Migrations (:meth:`PgDatabase.migrate`) are per component (``metadata``, ``memories``,
``arc_outbox``), numbered, and each run holds a transaction-level advisory lock: replicas
starting at once apply them one after the other, the later ones find the version current.
DDL is transactional in PostgreSQL, so a failed step leaves the previous version intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from memtrace.config import PostgresSettings
from memtrace.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of schema migrations (any constant all replicas agree on).
_MIGRATION_LOCK = 0x6D656D7472616365  # "memtrace"
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS memtrace_schema (
    component text PRIMARY KEY,
    version int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
# Presence locks: each process holds pg_advisory_lock(PRESENCE_CLASS, presence_key) on a
# connection of its own while it lives; PostgreSQL releases it when that connection closes.
# Claims on Arc outbox rows name their owner's presence_key (memtrace/storage/arc/pg_outbox.py).
PRESENCE_CLASS = 0x6D74
_PRESENCE_CHECK_S = 2.0

# The ICU root locale lower-cases like Python's str.lower (content search is case-insensitive
# by str.lower, docs/api.md); without ICU the database's default collation is used.
ICU_COLLATION = "und-x-icu"

# A connection borrowed from the pool (what every query function receives).
if TYPE_CHECKING:
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:
    Connection = PoolConnectionProxy

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return parts._replace(netloc=netloc).geturl()


def pg_error(exc: BaseException) -> StorageUnavailable:
    """Map a driver failure to a clean 503: the error class and SQLSTATE, never row data."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if isinstance(exc, asyncpg.QueryCanceledError):
            return StorageUnavailable("PostgreSQL statement timed out; retry shortly")
        if state.startswith("53"):  # insufficient resources: disk full, out of memory, …
            return StorageUnavailable(
                f"PostgreSQL is out of resources ({type(exc).__name__}); nothing was written"
            )
        return StorageUnavailable(f"PostgreSQL error {state} ({type(exc).__name__})")
    if isinstance(exc, TimeoutError):
        return StorageUnavailable("PostgreSQL did not answer in time (no free connection?)")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StorageUnavailable(f"PostgreSQL unavailable: {text}")


class PgDatabase:
    """The process's connection pool to the cluster's PostgreSQL database."""

    def __init__(self, settings: PostgresSettings, *, presence: bool = True) -> None:
        if not settings.url:
            raise ValueError("postgres.url is not set")
        self.settings = settings
        self.url = settings.url
        self._pool: asyncpg.Pool | None = None
        self.lower_collation: str | None = None  # set by open()
        self.known_months: set[tuple[int, int]] = set()  # memories partitions seen to exist
        self._with_presence = presence  # servers: yes; the CLI: no (it ships nothing)
        self.presence_key = 0  # set by open()
        self._presence: asyncpg.Connection | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._health: tuple[float, asyncio.Future[str | None]] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("PostgreSQL connection pool is closed")
        return self._pool

    def connect_args(self) -> dict[str, Any]:
        """Arguments of every connection this process opens (pool and dedicated ones)."""
        timeout_ms = int(self.settings.statement_timeout_s * 1000)
        return {
            "dsn": self.url,
            "timeout": self.settings.connect_timeout_s,
            "server_settings": {
                "application_name": "memtrace",
                "statement_timeout": str(timeout_ms),
                # a connection left in a transaction by a hung replica releases its locks
                "idle_in_transaction_session_timeout": str(max(timeout_ms, 60_000)),
                "timezone": "UTC",
                "jit": "off",  # JIT adds tens of ms to large counts, never pays off here
            },
        }

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                min_size=min(self.settings.pool_min, self.settings.pool_max),
                max_size=self.settings.pool_max,
                max_inactive_connection_lifetime=300.0,
                **self.connect_args(),
            )
        except DRIVER_ERRORS as exc:
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {safe_url(self.url)}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        async with self.connection() as conn:
            has_icu = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = $1)", ICU_COLLATION
            )
        self.lower_collation = ICU_COLLATION if has_icu else None
        if not has_icu:
            log.warning(
                "PostgreSQL has no ICU collation: content search folds case with the "
                "database's default collation"
            )
        if not self._with_presence:
            return
        try:
            await self._take_presence()
        except DRIVER_ERRORS as exc:
            raise pg_error(exc) from None
        self._presence_task = asyncio.create_task(self._keep_presence(), name="pg-presence")

    async def live_replicas(self) -> int:
        """How many processes (replicas) hold a presence lock on this database now."""
        async with self.connection() as conn:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = $1 AND objsubid = 2 AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())",
                    PRESENCE_CLASS,
                )
            )

    async def _take_presence(self) -> None:
        """Connect the presence connection and lock a key no live process holds (ours again
        after a reconnect, when it is still free)."""
        conn = await asyncpg.connect(**self.connect_args())
        candidates = [self.presence_key] if self.presence_key else []
        while True:
            key = candidates.pop() if candidates else random.randint(1, 2**31 - 1)
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1::int, $2::int)", PRESENCE_CLASS, key
            )
            if locked:
                self.presence_key, self._presence = key, conn
                return

    async def _keep_presence(self) -> None:
        while True:
            await asyncio.sleep(_PRESENCE_CHECK_S)
            try:
                if self._presence is None or self._presence.is_closed():
                    raise ConnectionError("presence connection closed")  # an OSError
                await self._presence.fetchval("SELECT 1", timeout=_PRESENCE_CHECK_S)
            except DRIVER_ERRORS as exc:
                log.warning("PostgreSQL presence connection lost (%s); reconnecting", exc)
                if self._presence is not None:
                    self._presence.terminate()
                    self._presence = None
                with contextlib.suppress(*DRIVER_ERRORS):
                    await self._take_presence()

    async def close(self) -> None:
        if self._presence_task is not None:
            self._presence_task.cancel()
            await asyncio.gather(self._presence_task, return_exceptions=True)
            self._presence_task = None
        if self._presence is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._presence.close(timeout=2)
            self._presence = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; driver failures become :class:`StorageUnavailable`."""
        try:
            async with self.pool.acquire(timeout=self.settings.acquire_timeout_s) as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise pg_error(exc) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[bool]:
        """Whether this process has the cluster-wide turn ``key`` for the block: a session
        advisory lock on one pooled connection, released at the end (or by PostgreSQL when that
        connection dies), for work one replica at a time does (the retention sweep)."""
        async with self.connection() as conn:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield got
            finally:
                if got:  # the pool's reset on release unlocks too, should this fail
                    with contextlib.suppress(*DRIVER_ERRORS):
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def ping(self) -> None:
        """Raise unless PostgreSQL answers within the acquire timeout."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1", timeout=self.settings.acquire_timeout_s)

    async def problem(self) -> str | None:
        """Why PostgreSQL cannot serve now, or None; one ping per second at most, however many
        org stores ask (``/health`` asks each open store)."""
        loop = asyncio.get_running_loop()
        if self._health is None or loop.time() - self._health[0] > 1.0:
            self._health = (loop.time(), asyncio.ensure_future(self._probe()))
        return await asyncio.shield(self._health[1])

    async def _probe(self) -> str | None:
        try:
            await self.ping()
        except StorageUnavailable as exc:
            return exc.message
        return None

    async def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Bring ``component`` to version ``len(steps)``; returns the version found before.

        ``steps[n]`` is the SQL script taking the component from version ``n`` to ``n + 1``.
        """
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_SCHEMA_TABLE)
            found = await conn.fetchval(
                "SELECT version FROM memtrace_schema WHERE component = $1", component
            )
            found = int(found or 0)
            if found > len(steps):
                raise StorageUnavailable(
                    f"PostgreSQL schema of {component} is version {found}, newer than this "
                    f"memtrace ({len(steps)}); upgrade memtrace on this replica"
                )
            for step in steps[found:]:
                await conn.execute(step)
            if found < len(steps):
                await conn.execute(
                    "INSERT INTO memtrace_schema (component, version) VALUES ($1, $2) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                    "updated_at = now()",
                    component,
                    len(steps),
                )
                log.info("PostgreSQL schema of %s: version %d -> %d", component, found, len(steps))
            return found
