"""SQLite access for async code: one writer thread that group-commits, pooled readers.

Every SQLite file memtrace owns (the metadata DB, each org's embedded store, each Arc outbox)
goes through :class:`SQLiteDatabase`. Write jobs are plain functions ``fn(conn) -> T`` queued to
the single writer thread, which runs every queued job inside one ``BEGIN IMMEDIATE`` transaction
and commits once: concurrent writers share one fsync. A job's awaiter resumes only after that
commit. One failing job does not undo the others: a group runs without savepoints first (they
cost ~5 us per job), and when a job fails it is rolled back and run again with each job in its
own savepoint. *Bulk* jobs (``write_bulk``) queued together are handed to the database's
``bulk`` function in one call, so a group of single-memory writes costs one dedup query and one
insert per table instead of one per write (bench/README.md).

Several processes may write the same file (``memtrace serve --workers N``, the MCP stdio server
beside it): SQLite's write lock serializes their transactions, so whatever a job reads inside
its transaction is what every process committed.
Readers run ``fn(conn)`` on the process's reader threads (:mod:`memtrace.storage.readpool`,
fair between orgs) with pooled read-only connections, so blocking SQLite work never runs on the
event loop. A read may carry a :class:`ScanBudget`: SQLite stops it once the budget is spent.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from memtrace.domain.dedup import DedupWindow
from memtrace.domain.errors import MemtraceError, StorageUnavailable
from memtrace.storage.base import NewMemory
from memtrace.storage.readpool import READ_POOL
from memtrace.storage.sqlite_limits import ScanBudget
from memtrace.storage.sqlite_limits import storage_error as storage_error  # (re-exported)

log = logging.getLogger(__name__)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]

_MAX_GROUP = 512  # jobs per group commit; bounds one transaction's size and latency
IDLE_RELEASE_S = 30.0  # a writer idle this long after writing releases its page cache


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any] | None  # None: a bulk job carrying ``payload``
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    payload: Any = None


# A job's own problem: undo just that job, keep the group going.
_JOB_ERRORS = (MemtraceError, ValueError, sqlite3.IntegrityError)
Outcome = tuple[Any, BaseException | None]


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _deliver_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _deliver(future, result, error)


def _hand_back(jobs: Sequence[_Job], outcomes: Sequence[Outcome]) -> None:
    """Resolve the jobs' futures: one call per event loop, not one wake-up per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for job, (result, error) in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_deliver_all, items)


def connect(
    path: Path, *, synchronous: Synchronous = "FULL", readonly: bool = False
) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with WAL settings."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            # Deleted content is overwritten with zeros, not left in free pages (erasure,
            # docs/api.md); costs I/O only when something is deleted.
            conn.execute("PRAGMA secure_delete = ON")
    except BaseException:
        conn.close()  # a half-set-up connection would leak its descriptors
        raise
    return conn


_KEYS_PER_QUERY = 500


def load_dedup_window(
    conn: sqlite3.Connection, table: str, items: Sequence[NewMemory], window: int
) -> DedupWindow:
    """The dedup window of one write group, inside the writer's transaction.

    Reads the stored ``(dedup_key, time, id)`` rows of the group's dedup keys near the group's
    times from ``table`` (a trusted constant with ``dedup_key``, ``time`` and ``id`` columns) in
    one query per 500 keys instead of one per memory.
    """
    dedup = DedupWindow(window)
    keys = list(dict.fromkeys(item.dedup_key for item in items))
    if not keys:
        return dedup
    low = min(item.time for item in items) - window
    high = max(item.time for item in items) + window
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        sql = (
            f"SELECT dedup_key, time, id FROM {table} WHERE time > ? AND time < ? "  # noqa: S608
            f"AND dedup_key IN ({', '.join('?' * len(chunk))}) ORDER BY time"
        )
        for key, at, memory_id in conn.execute(sql, [low, high, *chunk]):
            dedup.add(key, at, memory_id)
    return dedup


class SQLiteDatabase:
    """One SQLite file with a single group-committing writer thread and pooled readers.

    Args:
        path: the database file (its directory is created).
        setup: runs once on the writer connection before any job (schema, migrations); it
            manages its own transactions.
        synchronous: ``FULL`` fsyncs every commit (survives power loss); ``NORMAL`` survives a
            process crash but may lose the last commits on power loss.
        prepare_reader: runs on each new reader connection (e.g. to register SQL functions).
        on_begin: runs on the writer connection right after each group's ``BEGIN``.
        before_commit: runs once per group after every job, inside the transaction, just
            before ``COMMIT`` (work that is cheaper once per group than once per job); if it
            raises, the whole group fails and is rolled back.
        bulk: runs the payloads of consecutive ``write_bulk`` jobs in one call, returning one
            result per payload; a job error it raises sends the group to the savepoint path,
            where each payload runs alone.
        lane: the read lane (:mod:`memtrace.storage.readpool`): the org whose file this is;
            by default the file itself.
        max_readers: reader connections kept open between reads (default: the lane's
            concurrency plus one for a health check), so open files stay bounded per store.
    """

    def __init__(
        self,
        path: Path,
        *,
        setup: Callable[[sqlite3.Connection], None] | None = None,
        synchronous: Synchronous = "FULL",
        prepare_reader: Callable[[sqlite3.Connection], None] | None = None,
        on_begin: Callable[[sqlite3.Connection], None] | None = None,
        before_commit: Callable[[sqlite3.Connection], None] | None = None,
        bulk: Callable[[sqlite3.Connection, list[Any]], list[Any]] | None = None,
        lane: str | None = None,
        max_readers: int | None = None,
    ) -> None:
        self.path = path
        self.lane = lane or str(path)
        self._max_readers = max_readers
        self._setup = setup
        self._synchronous = synchronous
        self._prepare_reader = prepare_reader
        self._on_begin = on_begin
        self._before_commit = before_commit
        self._bulk = bulk
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []  # idle reader connections
        self._readers_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.idle_releases = 0  # times the idle writer released its page cache

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file, apply ``setup`` and start the writer thread."""
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run,
            args=(loop, started),
            name=f"sqlite-writer:{self.path.name}",
            daemon=True,
        )
        try:
            self._thread.start()
        except RuntimeError as exc:  # the process cannot start another thread
            self._thread = None
            self._closed = True
            raise storage_error(exc) from None
        try:
            await started
        except BaseException:
            self._closed = True
            raise

    async def close(self) -> None:
        """Finish every queued write, then close all connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        with self._readers_lock:
            idle, self._readers = self._readers, []
        for conn in idle:
            conn.close()  # (a read still running closes its own connection when it ends)

    # -- public API ---------------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's next group transaction; return after it is committed."""
        if self._closed:
            raise StorageUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, future))
        return await future

    async def write_bulk(self, payload: Any) -> Any:
        """Hand ``payload`` to the ``bulk`` function together with the other bulk payloads of
        the next group; return its result after the commit."""
        if self._closed:
            raise StorageUnavailable("store is closed")
        if self._bulk is None:
            raise TypeError("this database has no bulk function")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(None, loop, future, payload))
        return await future

    async def read(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        lane: str | None = None,
        budget: ScanBudget | None = None,
    ) -> T:
        """Run ``fn`` on a pooled read-only connection on a reader thread.

        Args:
            fn: the read; with a ``budget`` it must catch the interruption itself (an
                ``sqlite3.OperationalError`` while ``budget.spent``) and answer partially.
            lane: the lane to queue on instead of this file's (a metadata read of an org).
            budget: stop SQLite once this much work is done.
        """
        if self._closed:
            raise StorageUnavailable("store is closed")
        return await READ_POOL.run(lane or self.lane, lambda: self._read_sync(fn, budget))

    # -- internals ----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
        conn = connect(self.path, readonly=True)
        try:
            if self._prepare_reader:
                self._prepare_reader(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        keep = self._max_readers or READ_POOL.per_lane + 1
        with self._readers_lock:
            if not self._closed and len(self._readers) < keep:
                self._readers.append(conn)
                return
        conn.close()

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T], budget: ScanBudget | None) -> T:
        try:
            conn = self._reader()
        except (sqlite3.Error, OSError) as exc:
            raise storage_error(exc) from None
        try:
            if budget is not None:
                budget.start()
                conn.set_progress_handler(budget.check, ScanBudget.STEPS)
            return fn(conn)
        except sqlite3.Error as exc:
            raise storage_error(exc) from None
        finally:
            if budget is not None:
                conn.set_progress_handler(None, 0)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._release(conn)

    def _run(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, synchronous=self._synchronous)
            if self._setup:
                self._setup(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            failure = storage_error(exc) if isinstance(exc, sqlite3.Error | OSError) else exc
            loop.call_soon_threadsafe(_deliver, started, None, failure)
            return
        loop.call_soon_threadsafe(_deliver, started, None, None)
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        dirty = False  # wrote since the cache was last released
        while not stop:
            try:
                job = self._queue.get(timeout=IDLE_RELEASE_S if dirty else None)
            except queue.Empty:
                # Idle: hand the page cache back (a busy store's cache may be 64 MiB, and a
                # process serves many orgs); the next write re-reads what it needs.
                conn.execute("PRAGMA shrink_memory")
                self.idle_releases += 1
                dirty = False
                continue
            if job is None:
                break
            dirty = True
            jobs = [job]
            while len(jobs) < _MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._commit_group(conn, jobs)

    def _commit_group(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        try:
            outcomes = self._run_group(conn, jobs, isolated=False)
            if outcomes is None:  # a job failed: run every job in its own savepoint
                outcomes = self._run_group(conn, jobs, isolated=True)
                assert outcomes is not None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed on %s", self.path.name)
            log.warning("write transaction on %s failed: %s", self.path.name, exc)
            unavailable = storage_error(exc)
            _hand_back(jobs, [(None, unavailable)] * len(jobs))
            return
        except BaseException as exc:  # a bug in a job: fail the group, keep the writer alive
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.exception("write job crashed on %s", self.path.name)
            _hand_back(jobs, [(None, exc)] * len(jobs))
            return
        _hand_back(jobs, outcomes)

    def _run_group(
        self, conn: sqlite3.Connection, jobs: list[_Job], *, isolated: bool
    ) -> list[Outcome] | None:
        """One transaction up to (not including) ``COMMIT``. Without ``isolated``, a job error
        rolls everything back and returns ``None``; with it, each job (each bulk payload) runs
        in a savepoint and a failing one is undone alone."""
        conn.execute("BEGIN IMMEDIATE")
        if self._on_begin is not None:
            self._on_begin(conn)
        outcomes: list[Outcome] = []
        index = 0
        while index < len(jobs):
            job = jobs[index]
            if job.fn is None and not isolated:  # consecutive bulk jobs: one call
                end = index + 1
                while end < len(jobs) and jobs[end].fn is None:
                    end += 1
                unit = [j.payload for j in jobs[index:end]]
            else:
                end, unit = index + 1, [job.payload]
            if isolated:
                conn.execute("SAVEPOINT job")
            try:
                if job.fn is not None:
                    results = [job.fn(conn)]
                else:
                    assert self._bulk is not None
                    results = self._bulk(conn, unit)
            except _JOB_ERRORS as exc:
                if not isolated:
                    conn.execute("ROLLBACK")
                    return None
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((None, exc))
            else:
                if isolated:
                    conn.execute("RELEASE job")
                outcomes += [(result, None) for result in results]
            index = end
        if self._before_commit is not None:
            self._before_commit(conn)
        return outcomes
