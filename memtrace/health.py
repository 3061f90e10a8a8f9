"""What ``/health``, ``/ready`` and ``/metrics`` report, kept current in the background.

Probes never wait on a backend: a background task checks the metadata DB, whether the data
directory still takes writes, and each open store (each check bounded by
``server.health_timeout_s``, a hung backend never delays the others), every
``server.health_interval_s``; the probes answer from the last results in microseconds.
Readiness is about this process: it is ready while the metadata DB answers and the data
directory takes writes. One org's backend being down is reported for that org (``/health``,
``memtrace_store_healthy``) and never makes the whole server unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from memtrace import __version__
from memtrace.config import Settings
from memtrace.metadata.base import MetadataStore
from memtrace.storage.base import StoreHealth
from memtrace.storage.readpool import READ_POOL
from memtrace.telemetry.metrics import Metrics
from memtrace.tenancy import StoreRegistry

log = logging.getLogger(__name__)

PROBE_FILE = ".memtrace-write-probe"
PROBE_BYTES = 64 * 1024  # a few SQLite pages: what the smallest commit needs
_UNCHECKED = "not checked yet"


@dataclass(frozen=True, slots=True)
class _Checked:
    health: StoreHealth
    at: float


def probe_write(data_dir: Path) -> str | None:
    """Write and fsync a fresh small file in the data directory; ``None`` when that works,
    else why not (no space left, a read-only file system, a file size limit …)."""
    path = data_dir / PROBE_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a new file needs new blocks: rewriting old ones works on a full disk
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            left = memoryview(b"\0" * PROBE_BYTES)
            while left:  # a file size limit shows as a short write first, then EFBIG
                left = left[os.write(fd, left) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return "the server has too many files open (its file descriptor limit is reached)"
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return f"the data directory does not take writes ({reason})"
    return None


class HealthMonitor:
    """Background checks of this process and of every open store, and the probes' answers."""

    def __init__(
        self, settings: Settings, catalog: MetadataStore, stores: StoreRegistry, metrics: Metrics
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._stores = stores
        self._metrics = metrics
        self._interval = settings.server.health_interval_s
        self._timeout = settings.server.health_timeout_s
        self.started_at = time.monotonic()
        self._metadata_ok = False
        self._disk_problem: str | None = _UNCHECKED
        self._checked_at = 0.0
        self._store_health: dict[str, _Checked] = {}
        self._checking: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check this process once (so ``/ready`` is right from the first probe), then keep
        checking in the background."""
        await self._check_process()
        self._loop_task = asyncio.create_task(self._run(), name="memtrace-health")

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._checking.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        self._checking.clear()

    def store_opened(self, org_id: str) -> None:
        """Check a store that was just opened now, not at the next tick."""
        self._check_store(org_id)

    # -- the probes' answers ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._metadata_ok and self._disk_problem is None

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body of ``/health``) from the last checks; never waits."""
        now = time.monotonic()
        stores: dict[str, dict[str, Any]] = {}
        for org, checked in sorted(self._store_health.items()):
            h = checked.health
            stores[org] = {
                "backend": h.backend,
                "healthy": h.healthy,
                "outbox_pending": h.outbox_pending,
                **(
                    {"outbox_unverified": h.outbox_unverified, "outbox_parked": h.outbox_parked}
                    if h.backend == "arc"
                    else {}
                ),
                "checked_ago_s": round(now - checked.at, 3),  # when its last check started
                **({"detail": h.detail} if h.detail else {}),
            }
        for org, message in self._stores.unusable().items():
            stores.setdefault(org, {"backend": "arc", "healthy": False, "detail": message})
        disk: dict[str, Any] = {"writable": self._disk_problem is None}
        if self._disk_problem:
            disk["detail"] = self._disk_problem
        body = {
            "status": "ok" if self.ready else "degraded",
            "service": "memtrace",
            "version": __version__,
            "uptime_s": round(now - self.started_at, 3),
            "checked_ago_s": round(now - self._checked_at, 3),
            "metadata": {"healthy": self._metadata_ok},
            "disk": disk,
            "stores": stores,
        }
        return self.ready, body

    # -- background checks --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._check_process()
                for org in self._stores.open_orgs():
                    self._check_store(org)
                self._forget_closed()
            except Exception:
                log.exception("health check failed; retrying")

    async def _check_process(self) -> None:
        metadata_ok = True
        try:
            async with asyncio.timeout(self._timeout):
                await self._catalog.ping()
        except Exception:
            metadata_ok = False
        try:
            async with asyncio.timeout(self._timeout):
                disk = await asyncio.to_thread(probe_write, self._settings.data_dir)
        except TimeoutError:
            disk = f"the data directory did not take a write within {self._timeout:g} s"
        if disk is not None and disk != self._disk_problem:
            log.warning("%s; /ready answers 503 until it does", disk)
        elif disk is None and self._disk_problem not in (None, _UNCHECKED):
            log.warning("the data directory takes writes again")
        self._metadata_ok, self._disk_problem = metadata_ok, disk
        self._checked_at = time.monotonic()
        self._metrics.ready.set(1 if self.ready else 0)
        self._metrics.reads_queued.set(READ_POOL.queued())

    def _check_store(self, org_id: str) -> None:
        running = self._checking.get(org_id)
        if running is None or running.done():
            task = asyncio.create_task(self._store(org_id), name=f"memtrace-health:{org_id}")
            self._checking[org_id] = task

    async def _store(self, org_id: str) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                health = await self._stores.check(org_id)
        except TimeoutError:
            previous = self._store_health.get(org_id)
            silent = f"no answer to the health check within {self._timeout:g} s"
            health = (
                replace(previous.health, healthy=False, detail=silent)  # counts: the last known
                if previous is not None
                else StoreHealth(self._stores.backend_of(org_id), False, detail=silent)
            )
        except Exception as exc:  # a store's health() never raises; be safe anyway
            health = StoreHealth(self._stores.backend_of(org_id), False, 0, str(exc))
        finally:
            self._checking.pop(org_id, None)
        if health is None:  # closed meanwhile
            return
        self._store_health[org_id] = _Checked(health, started)
        self._metrics.store_healthy.labels(org_id).set(1 if health.healthy else 0)
        if health.backend == "arc":
            self._metrics.outbox_pending.labels(org_id).set(health.outbox_pending)
            self._metrics.outbox_unverified.labels(org_id).set(health.outbox_unverified)
            self._metrics.outbox_parked.labels(org_id).set(health.outbox_parked)

    def _forget_closed(self) -> None:
        """Stores closed since (deleted orgs, idle stores closed to make room) leave the
        report and the metrics, so neither grows with every org ever served."""
        open_orgs = set(self._stores.open_orgs())
        for org in [o for o in self._store_health if o not in open_orgs]:
            del self._store_health[org]
            for gauge in (
                self._metrics.store_healthy,
                self._metrics.outbox_pending,
                self._metrics.outbox_unverified,
                self._metrics.outbox_parked,
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(org)
