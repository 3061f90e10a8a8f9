"""The shipper of one Arc-bound org: outbox rows to Arc, and proof that Arc kept them.

One background task per open :class:`~memtrace.storage.arc.store.ArcStore`:

- **ship**: pending rows in batches of ``arc.batch_size`` (lingering ``arc.flush_interval_ms``
  so bursts share a request), each batch with an unambiguous time unit
  (:mod:`memtrace.storage.arc.batch`). Arc's 204 marks the rows *shipped*. Outages (refused
  connections, timeouts, 5xx, credentials) are retried with capped, jittered backoff. A batch
  Arc refuses (400/413/422) is split until the refused rows stand alone; those are *parked*
  and the rest ships, so one bad row never blocks the org.
- **verify**: a 204 only means "in Arc's write buffer". Rows shipped ``arc.verify_after_s``
  ago are looked up by id (one query per 200 ids, bounded by the rows' times); the ones Arc
  shows are deleted from the outbox, the ones it still does not show ``arc.visibility_grace_s``
  after their 204 go back to pending and are shipped again.
- **keep the dedup index**: seeded once from Arc, pruned every 5 s (see ``Outbox.prune_keys``).

One process at a time does all of this for an outbox: every process that opens the org's store
(each worker of ``memtrace serve --workers N``, an embedded ``memtrace-mcp`` beside the server)
runs a shipper, but only the one holding the outbox's ship lock (an exclusive ``flock`` on
``arc_outbox.db.ship-lock``, released by the kernel when its process ends) ships; the others try
to take it every tick. Writes in another process are seen by the owner's next tick
(``arc.flush_interval_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
from collections.abc import Sequence

from memtrace.config import ArcSettings
from memtrace.domain.errors import StorageUnavailable
from memtrace.domain.timestamps import now_us
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.batch import write_isolating
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable
from memtrace.storage.arc.layouts import LayoutProbe, dedup_entries
from memtrace.storage.arc.outbox_base import OutboxStore
from memtrace.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

IDS_PER_QUERY = 200  # keeps each "id IN (…)" query far below Arc's 10,000-character limit
_VERIFY_ROWS = 20 * IDS_PER_QUERY  # rows verified per pass (a pass then yields to shipping)
_PRUNE_EVERY_S = 5.0


async def shown_by_arc(
    client: ArcClient, measurement: str, org_id: str, rows: Sequence[tuple[str, int]]
) -> set[str]:
    """Which of ``rows`` (id, time) Arc shows in a query: one query per 200 ids, each bounded
    by its rows' times so Arc reads only their partitions. Arc errors propagate."""
    ordered = sorted(rows, key=lambda row: row[1])
    found: set[str] = set()
    for start in range(0, len(ordered), IDS_PER_QUERY):
        chunk = ordered[start : start + IDS_PER_QUERY]
        sql = arc_sql.ids_present_sql(
            measurement,
            org_id,
            [memory_id for memory_id, _ in chunk],
            since=chunk[0][1],
            until=chunk[-1][1],
        )
        found.update(str(row[0]) for row in await client.query(sql))
    return found


def key_coverage_us(window_us: int) -> int:
    """How far back (in memory time) the local dedup index is complete: two windows, so a
    write dated up to one window ago finds every key it can collide with locally."""
    return 2 * window_us


class ShipLock:
    """An exclusive, non-blocking ``flock`` on a file beside the outbox: the process holding
    it is the outbox's one shipper. Without a path it is always held."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self.path is None or self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True while this one holds it."""
        if self._fd is not None or self.path is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class Shipper:
    """Ships, verifies and keeps the dedup index of one org's outbox (see the module doc)."""

    def __init__(
        self,
        org_id: str,
        outbox: OutboxStore,
        client: ArcClient,
        measurement: str,
        settings: ArcSettings,
        *,
        metrics: Metrics | None,
        dedup_window_us: int | None,
        layouts: LayoutProbe | None = None,
    ) -> None:
        self.org_id = org_id
        self.outbox = outbox
        self.client = client
        self.measurement = measurement
        self.settings = settings
        self._metrics = metrics
        self._window = dedup_window_us
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._next_verify = 0.0
        self.consecutive_failures = 0
        # Held while a batch is read, sent and marked shipped: a delete
        # (:mod:`memtrace.storage.arc.erase`) waits for it, so no row it removes is in flight.
        self.lock = asyncio.Lock()
        # which column sets the measurement holds (memtrace's, the Go memtrace's: layouts.py)
        self.layouts = layouts or LayoutProbe(client, arc_sql.columns_sql(measurement))
        # Held by the one process that ships a SQLite outbox; a PostgreSQL outbox leases its
        # rows to the replicas' shippers itself (pg_outbox.py), so every process may ship.
        path = getattr(outbox, "path", None)
        self.ship_lock = ShipLock(f"{path}.ship-lock" if path is not None else None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"arc-shipper:{self.org_id}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        """Stop the task, then ship what is pending for up to ``arc.shutdown_drain_s`` while
        Arc answers (what is left stays durable in the outbox for the next start)."""
        self._closing = True
        self._wakeup.set()
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        try:
            if self.settings.shutdown_drain_s > 0 and self.ship_lock.acquire():
                async with asyncio.timeout(self.settings.shutdown_drain_s):
                    await self._drain()
        except TimeoutError:
            log.warning(
                "arc outbox of %s not drained at shutdown; ships on next start", self.org_id
            )
        finally:
            self.ship_lock.release()

    async def _loop(self) -> None:
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
            if not self.ship_lock.acquire():
                continue  # another process ships this outbox
            if not seeded:
                seeded = await self._seed_dedup_index()
            while not self._closing and await self.ship_once():
                if loop.time() >= self._next_verify:  # a long backlog must not starve it
                    await self.verify()
            if loop.time() >= self._next_verify:
                await self.verify()
            if loop.time() - last_prune > _PRUNE_EVERY_S:
                last_prune = loop.time()
                await self.prune_keys()

    async def _drain(self) -> None:
        """Ship batch after batch until nothing is pending or Arc fails once."""
        failures = self.consecutive_failures
        while await self.ship_once() and self.consecutive_failures == failures:
            pass

    # -- ship ---------------------------------------------------------------------------------

    async def ship_once(self) -> bool:
        """Ship one batch; True when there may be more to ship now."""
        async with self.lock:
            more, pause = await self._ship_batch()
        if pause:
            await asyncio.sleep(pause)  # backoff outside the lock: deletes may go meanwhile
        return more

    async def _ship_batch(self) -> tuple[bool, float]:
        """Ship one batch: (maybe more to ship, seconds to wait before the next try)."""
        try:
            batch = await self.outbox.pending_batch(self.settings.batch_size)
        except StorageUnavailable:
            log.warning("arc outbox of %s unreadable; retrying", self.org_id)
            return False, self.settings.flush_interval_ms / 1000
        if not batch:
            return False, 0.0
        enqueued = {seq: at for seq, at, _ in batch}

        async def accepted(seqs: list[int]) -> None:
            now = now_us()
            self.layouts.shipped()
            await self.outbox.mark_shipped(seqs, now)
            if self._metrics is not None:
                histogram = self._metrics.arc_ship_latency.labels(self.org_id)
                for seq in seqs:
                    histogram.observe(max(0, now - enqueued[seq]) / 1e6)

        try:
            refused = await write_isolating(
                self.client, self.measurement, [(seq, r) for seq, _, r in batch], accepted
            )
        except (ArcUnavailable, ArcRejected) as exc:
            # Never drop: back off (capped, jittered) and retry the rows still pending.
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
            return True, delay * random.uniform(0.5, 1.0)
        self.consecutive_failures = 0
        if refused:
            await self.outbox.park(refused, now_us())
            log.warning(
                "Arc refused %d rows of %s, parked (kept and readable; see memtrace org outbox "
                "%s): %s",
                len(refused),
                self.org_id,
                self.org_id,
                refused[0][1],
            )
        return len(batch) == self.settings.batch_size, 0.0

    # -- verify -------------------------------------------------------------------------------

    async def verify(self) -> None:
        """One pass over rows shipped at least ``verify_after_s`` ago (see the module doc)."""
        loop = asyncio.get_running_loop()
        now = now_us()
        try:
            rows = await self.outbox.shipped(
                now - int(self.settings.verify_after_s * 1e6), _VERIFY_ROWS
            )
        except StorageUnavailable:
            return
        lost_before = now - int(self.settings.visibility_grace_s * 1e6)
        if rows and not await self._ours_in_arc():
            # A measurement of Go's rows only: ours have no column to be found in until Arc
            # flushes them (the layout is read again on every pass until then).
            self._next_verify = loop.time() + self.settings.verify_after_s / 2
            return
        waiting = False
        rows.sort(key=lambda row: row.time)  # chunks with tight time bounds
        for start in range(0, len(rows), IDS_PER_QUERY):
            chunk = rows[start : start + IDS_PER_QUERY]
            try:
                present = await shown_by_arc(
                    self.client, self.measurement, self.org_id, [(r.id, r.time) for r in chunk]
                )
            except (ArcUnavailable, ArcRejected) as exc:
                if self._metrics is not None:
                    self._metrics.arc_errors.labels("query").inc()
                log.info("verifying %s's rows in Arc failed (%s); retrying", self.org_id, exc)
                self._next_verify = loop.time() + min(self.settings.retry_max_s, 5.0)
                return
            verified = [row.seq for row in chunk if row.id in present]
            lost = [
                row.seq for row in chunk if row.id not in present and row.shipped_at <= lost_before
            ]
            waiting = waiting or len(verified) + len(lost) < len(chunk)
            if verified or lost:
                await self.outbox.settle(verified, lost)
            if lost:
                self._reship(len(lost))
        # Rows Arc does not show yet (within the grace) are checked again a little later.
        self._next_verify = loop.time() + (
            max(self.settings.verify_after_s / 2, self.settings.flush_interval_ms / 1000)
            if waiting
            else 0.0
        )

    async def _ours_in_arc(self) -> bool:
        try:
            return (await self.layouts.get()).ours
        except (ArcUnavailable, ArcRejected):
            return True  # let the verify query meet the same failure and report it

    def _reship(self, n: int) -> None:
        if self._metrics is not None:
            self._metrics.arc_reshipped.labels(self.org_id).inc(n)
        log.warning(
            "Arc does not show %d rows of %s %.0fs after accepting them (lost write buffer?); "
            "shipping them again",
            n,
            self.org_id,
            self.settings.visibility_grace_s,
        )
        self._wakeup.set()

    # -- dedup index --------------------------------------------------------------------------

    async def prune_keys(self) -> None:
        if self._window is None:
            return
        now = now_us()
        try:
            await self.outbox.prune_keys(now - key_coverage_us(self._window), now - self._window)
        except StorageUnavailable:
            log.warning("dedup index of %s could not be pruned; will retry", self.org_id)

    async def _seed_dedup_index(self) -> bool:
        """Once per outbox file: load the dedup keys Arc already holds for the index's
        coverage (a binding to a database that has data). One attempt; True once done."""
        if self._window is None or await self.outbox.get_state("seeded"):
            return True
        now = now_us()
        try:
            layout = await self.layouts.get()
            sql = arc_sql.dedup_seed_sql(
                self.measurement, self.org_id, now - key_coverage_us(self._window), layout
            )
            rows = await self.client.query(sql)
        except (ArcUnavailable, ArcRejected):
            return False
        await self.outbox.remember_keys(dedup_entries(layout, rows, derived=True), now)
        await self.outbox.set_state("seeded", "1")
        return True
