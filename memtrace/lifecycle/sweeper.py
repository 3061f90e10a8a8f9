"""The retention sweeper of a running server: every ``retention.sweep_interval_s``, each org's
policy (its own over the ``[retention]`` defaults) is applied by
:meth:`~memtrace.lifecycle.service.Lifecycle.apply_retention`, in bounded batches with a pause
between them, so writers never wait behind a long delete. In cluster mode the replicas take
turns: a pass runs only where ``turn`` says so (a PostgreSQL advisory lock, see
:meth:`memtrace.runtime.Runtime`), so two replicas never sweep the same org at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from memtrace.config import Settings
from memtrace.domain.errors import MemtraceError
from memtrace.domain.lifecycle import RetentionPolicy
from memtrace.domain.timestamps import now_us
from memtrace.lifecycle.service import Lifecycle
from memtrace.metadata.base import MetadataStore

log = logging.getLogger(__name__)

ACTOR = "retention"
FIRST_PASS_S = 30.0


class RetentionSweeper:
    """Applies retention to every org with a policy; ``run_once`` is one full pass."""

    def __init__(
        self,
        catalog: MetadataStore,
        lifecycle: Callable[[str, str], Awaitable[Lifecycle]],
        settings: Settings,
        turn: Callable[[], AbstractAsyncContextManager[bool]] | None = None,
    ) -> None:
        self._catalog = catalog
        self._lifecycle = lifecycle
        self._settings = settings
        self._turn = turn
        self.passes = 0
        self.skipped = 0  # passes left to another replica (it held the turn)

    async def policies(self) -> dict[str, RetentionPolicy]:
        """Every org's effective policy that deletes something."""
        defaults = self._settings.retention.policy()
        own = await self._catalog.list_retention()
        found = {}
        for org in await self._catalog.list_orgs():
            policy = own.get(org.id, RetentionPolicy()).over(defaults)
            if policy.rules(now_us()):
                found[org.id] = policy
        return found

    async def run_once(self) -> dict[str, int]:
        """One pass over every org; memories deleted per org."""
        deleted: dict[str, int] = {}
        for org_id, policy in (await self.policies()).items():
            try:
                lifecycle = await self._lifecycle(org_id, ACTOR)
                deleted[org_id] = await lifecycle.apply_retention(policy, now_us())
            except MemtraceError as exc:
                log.warning("retention of %s skipped this pass: %s", org_id, exc.message)
        self.passes += 1
        return deleted

    async def run_turn(self) -> dict[str, int] | None:
        """One pass if this process has the turn (always, outside cluster mode); ``None``
        when another replica is sweeping now."""
        if self._turn is None:
            return await self.run_once()
        async with self._turn() as mine:
            if mine:
                return await self.run_once()
        self.skipped += 1
        log.info("retention pass left to the replica sweeping now")
        return None

    async def run_forever(self) -> None:
        """A pass shortly after start (not at once: start-up has enough to do), then one per
        interval."""
        interval = self._settings.retention.sweep_interval_s
        await asyncio.sleep(min(interval, FIRST_PASS_S))
        while True:
            try:
                await self.run_turn()
            except Exception:
                log.exception("retention pass failed; next one in %.0f s", interval)
            await asyncio.sleep(interval)
