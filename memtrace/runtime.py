"""The composition of one running memtrace process: settings, metadata, auth, stores, services.

Transport-free: the REST app, the embedded MCP server and the tests all drive a
:class:`Runtime`. A background task flushes coalesced agent activity and, whenever the metadata
DB was changed (by this or another process: the CLI revoking a key, deleting an org, …),
reloads the key snapshot and the org list. The tick is 0.5 s, so admin changes are seen well
within the 2 seconds docs/api.md promises.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from memtrace.auth.keys import Authenticator, Principal, new_api_key
from memtrace.auth.permissions import ALL_PERMISSIONS
from memtrace.auth.ratelimit import RateLimiter, SharedRateLimiter
from memtrace.auth.streams import StreamCounts
from memtrace.config import Settings
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.timestamps import now_us
from memtrace.health import HealthMonitor
from memtrace.lifecycle.service import Lifecycle
from memtrace.lifecycle.sweeper import RetentionSweeper
from memtrace.metadata.backend import create_catalog, create_pg
from memtrace.metadata.goimport import LegacyArc
from memtrace.service import MemoryService
from memtrace.service_feed import FeedService
from memtrace.storage.readpool import READ_POOL
from memtrace.storage.sqlite_limits import raise_open_file_limit
from memtrace.telemetry.metrics import Metrics
from memtrace.tenancy import StoreRegistry

log = logging.getLogger(__name__)

RELOAD_INTERVAL_S = 0.5
REPLICAS_EVERY_TICKS = 10  # cluster mode: recount the live replicas every 5 s
# cluster mode: the advisory lock whose holder runs the retention sweep (one replica at a time)
SWEEP_LOCK = 0x6D74_7377_6565_70  # "mtsweep"


# -- what the worker processes of one ``memtrace serve --workers N`` share --------------------
# Besides the data files: the parent creates a directory before it starts the workers and
# removes it when they are gone. It holds the rate limiter's bucket table (SharedRateLimiter)
# and prometheus_client's per-process metric files (PROMETHEUS_MULTIPROC_DIR). Everything else
# the workers share lives in the data directory's SQLite files: each org's store (SQLite's lock
# serializes their write transactions; dedup decisions and new ids are made inside them), the
# metadata DB (keys, revocations, agents: every worker reloads on change within 0.5 s) and each
# Arc outbox (one worker at a time ships it, see memtrace.storage.arc.shipper).

SHARE_ENV = "MEMTRACE_WORKER_SHARE"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class WorkerShare:
    """The shared directory of one multi-worker server."""

    directory: Path

    @classmethod
    def create(cls) -> WorkerShare:
        """A fresh directory (in the parent, before any worker starts)."""
        directory = Path(tempfile.mkdtemp(prefix="memtrace-workers-"))
        (directory / "metrics").mkdir()
        return cls(directory)

    def export(self) -> None:
        """Name it in this process's environment, which the workers inherit."""
        os.environ[SHARE_ENV] = str(self.directory)
        os.environ[METRICS_ENV] = str(self.directory / "metrics")

    @classmethod
    def from_env(cls) -> WorkerShare | None:
        """The share of the server this worker belongs to, if any."""
        directory = os.environ.get(SHARE_ENV)
        return cls(Path(directory)) if directory else None

    def rate_limiter(self, rate: float, burst: int, namespace: str) -> SharedRateLimiter:
        return SharedRateLimiter(self.directory / "ratelimit", rate, burst, namespace=namespace)

    def remove(self) -> None:
        """Delete the directory (the parent, once every worker has exited)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        for name in (SHARE_ENV, METRICS_ENV):
            os.environ.pop(name, None)


class Runtime:
    """Everything a memtrace process needs, started and stopped as one unit."""

    def __init__(self, settings: Settings, *, share: WorkerShare | None = None) -> None:
        """``share``: this process is one worker of several (``memtrace serve --workers``)."""
        self.settings = settings
        self.share = share
        # cluster mode (docs/deploy-cluster.md): one bounded pool for metadata and stores
        self.pg = create_pg(settings)
        self.catalog = create_catalog(settings, self.pg)
        self.auth = Authenticator(enabled=settings.auth.enabled)
        # per API key and per org, shared by the workers of one server (memtrace serve
        # --workers); in cluster mode each replica enforces 1/N of them (see _watch)
        limits = settings.limits
        self.limiter = self.rate_limiter(limits.rate_per_s, limits.rate_burst, "key")
        self.org_limiter = self.rate_limiter(limits.org_rate_per_s, limits.org_rate_burst, "org")
        self.metrics = Metrics()
        # open streams (MCP's GET /sse and GET /api/v1/stream), under one set of caps
        self.streams = StreamCounts.from_settings(settings)
        self.stores = StoreRegistry(settings, self.metrics, pg=self.pg)
        self.monitor = HealthMonitor(settings, self.catalog, self.stores, self.metrics)
        self.stores.on_open = self.monitor.store_opened
        self.started_at = time.monotonic()
        # set when the server is about to stop (server.shutdown_delay_s): /ready answers 503
        self.draining = False
        self._watcher: asyncio.Task[None] | None = None
        self.sweeper = RetentionSweeper(
            self.catalog,
            self.lifecycle,
            settings,
            turn=partial(self.pg.exclusive, SWEEP_LOCK) if self.pg is not None else None,
        )
        self._sweeping: asyncio.Task[None] | None = None
        # Reloads run one at a time: two overlapping ones could apply an older key snapshot
        # after a newer one (a key created just before would be refused until the next tick).
        self._reload_lock = asyncio.Lock()

    async def start(self, *, bootstrap_key: bool = False, sweep: bool = True) -> str | None:
        """Open the metadata DB (running migrations), make sure ``org_default`` exists, and
        start watching for admin changes.

        Args:
            bootstrap_key: create an admin key for ``org_default`` if the deployment has no
                key at all (first ``memtrace serve``).
            sweep: run the retention sweeper (``retention.enabled``); the embedded MCP stdio
                server leaves it to ``memtrace serve``.

        Returns:
            The plaintext of a newly created admin key (to print once), else ``None``.
        """
        READ_POOL.configure(self.settings.storage.read_threads, self.settings.reads_per_org)
        self._check_open_file_limit(raise_open_file_limit())
        await self.catalog.open()
        await self.stores.prepare()
        await self._adopt_legacy_arc()
        key = await self._bootstrap(bootstrap_key and self.settings.auth.enabled)
        await self.reload()
        await self.monitor.start()
        self._watcher = asyncio.create_task(self._watch(), name="memtrace-metadata-watch")
        if sweep and self.settings.retention.enabled:
            self._sweeping = asyncio.create_task(
                self.sweeper.run_forever(), name="memtrace-retention"
            )
        return key

    def _check_open_file_limit(self, limit: int) -> None:
        """Warn when the descriptors the settings may need exceed the process's limit: the
        server still works (idle stores are closed when descriptors run out), with more churn."""
        settings = self.settings
        need = (
            settings.server.max_connections
            + settings.storage.max_open_stores * (3 + 2 * settings.reads_per_org)
            + 64
        )
        if need > limit:
            log.warning(
                "open-file limit %d is below what server.max_connections and "
                "storage.max_open_stores may need (%d); raise it (ulimit -n, LimitNOFILE=) or "
                "lower storage.max_open_stores",
                limit,
                need,
            )

    async def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            await asyncio.gather(self._sweeping, return_exceptions=True)
            self._sweeping = None
        await self.monitor.close()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self.stores.close()
        await self.catalog.close()
        if self.pg is not None:
            await self.pg.close()
        if self.share is not None:
            self.metrics.process_stopped()

    async def _adopt_legacy_arc(self) -> None:
        """A Go ``memtrace.toml`` with the legacy ``[arc]`` url binds ``org_default`` on the
        first start, as the Go server did (docs/migrating-from-go.md)."""
        legacy = self.settings.legacy_arc
        if not legacy.url:
            return
        adopted = await self.catalog.adopt_legacy_arc(
            LegacyArc(
                url=legacy.url,
                api_key=legacy.api_key.get_secret_value() if legacy.api_key else "",
                database=legacy.database or "",
                measurement=legacy.measurement or "",
            ),
            now_us(),
        )
        if adopted:
            log.warning(
                "legacy [arc] settings (url %s) are now the Arc binding of %s; remove "
                "[arc] url/api_key/database/measurement from the config "
                "(see: memtrace org show-arc %s)",
                legacy.url,
                DEFAULT_ORG_ID,
                DEFAULT_ORG_ID,
            )

    async def _bootstrap(self, create_key: bool) -> str | None:
        now = now_us()
        record, plain = None, None
        if create_key:  # bcrypt is slow: hash outside the write transaction
            record, plain = new_api_key(
                DEFAULT_ORG_ID,
                "bootstrap-admin",
                ALL_PERMISSIONS,
                rounds=self.settings.auth.bcrypt_rounds,
                now=now,
            )

        created = await self.catalog.bootstrap(
            default_org=not self.settings.auth.enabled, admin_key=record, now=now
        )
        return plain if created else None

    async def reload(self) -> None:
        """Re-read keys and orgs; close the stores of deleted orgs."""
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        # Read on the catalog's watch thread, never in the shared reader pool (tenant reads).
        snapshot = await self.catalog.admin_snapshot()
        self.auth.load(snapshot.keys)
        live = {org.id for org in snapshot.orgs}
        for org_id in await self.stores.apply_bindings(snapshot.bindings):
            log.info("storage binding of %s changed; its store will be reopened", org_id)
        for org_id in await self.stores.retain(live):
            self.catalog.forget_org(org_id)
            log.info("org %s was deleted; its store is closed", org_id)

    async def _watch(self) -> None:
        for tick in itertools.count():
            await asyncio.sleep(RELOAD_INTERVAL_S)
            try:
                # Admin changes first: a flush waits for the metadata writer, which tenants
                # keep busy (sessions, new agents); the reload must not wait behind it.
                if await self.catalog.changed():
                    await self.reload()
                await self.catalog.flush_activity()
                if self.pg is not None and tick % REPLICAS_EVERY_TICKS == 0:
                    # rate limits are the cluster's: each live replica enforces its share
                    share = 1 / max(1, await self.pg.live_replicas())
                    self.limiter.share = self.org_limiter.share = share
            except Exception:
                log.exception("metadata watch tick failed; retrying")

    def rate_limiter(
        self, rate: float, burst: int, namespace: str
    ) -> RateLimiter | SharedRateLimiter:
        """A token-bucket limiter of this process, or of every worker when there are several
        (one allowance per server, whichever worker a request reaches)."""
        if self.share is not None and rate > 0:
            return self.share.rate_limiter(rate, burst, namespace)
        return RateLimiter(rate, burst)

    async def authenticate(self, presented: str | None) -> Principal:
        return await self.auth.authenticate(presented)

    async def service(self, org_id: str) -> MemoryService:
        """The service bound to ``org_id``'s store."""
        store = await self.stores.get(org_id)
        return MemoryService(
            org_id, store, self.catalog, self.settings, self.metrics, offload=_on_lane(org_id)
        )

    async def feed(self, org_id: str) -> FeedService:
        """The feed and the live stream of ``org_id`` (docs/feed.md)."""
        return FeedService(await self.service(org_id))

    async def lifecycle(self, org_id: str, actor: str) -> Lifecycle:
        """Delete, forget, export, import and retention of ``org_id``, done by ``actor`` (an
        API key id, ``cli`` or ``retention``: what the audit log records)."""
        return Lifecycle(await self.service(org_id), actor)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body of ``/health``) from the background checks (:mod:`memtrace.health`):
        answers at once, whatever a backend does. A draining server is not ready."""
        ready, body = self.monitor.report()
        if self.draining:
            return False, {**body, "draining": True}
        return ready, body


def _on_lane(org_id: str) -> Callable[[Callable[[], Any]], Any]:
    """CPU work of an org's request (context rendering) runs on the org's read lane: off the
    event loop, and counted against the org's share of the reader threads."""

    def offload(fn: Callable[[], Any]) -> Any:
        return READ_POOL.run(org_id, fn)

    return offload
