"""Live delivery of an org's new memories to the streams of this process (docs/feed.md).

One :class:`ChangeTail` per org with open streams reads the org's change log once for all of
them: a local write wakes it (``notify``, called by the tenancy layer after every write of this
process), and it also looks every ``poll_s`` for what other processes committed (replicas in
cluster mode, other workers of ``memtrace serve --workers``). It keeps the last entries it read
in memory; each stream filters them with :func:`~memtrace.storage.rows.matches`, so a write
costs one store read per org, not one per subscriber. A stream resuming from a position older
than the tail's memory reads the store itself (with its filters) until it has caught up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from memtrace.domain.memory import MemoryRecord
from memtrace.storage.base import ChangePage, MemoryQuery
from memtrace.storage.rows import matches

log = logging.getLogger(__name__)

Entry = tuple[int, MemoryRecord]
Fetch = Callable[[int, MemoryQuery, int], Awaitable[ChangePage]]
Head = Callable[[], Awaitable[int]]

TAIL_BATCH = 500  # entries the tail reads per store call
# Entries kept in memory for streams a little behind (trimmed at twice this; a content is at
# most limits.max_content_bytes, so an org with open streams holds at most ~1024 of them).
KEEP = 512
CATCH_UP_BATCH = 200  # entries a stream behind the tail reads per store call
_RETRY_S = 1.0  # after a failed read (the store is unavailable), the tail tries again


class Signal:
    """Wakes every current waiter at once; a waiter takes its event before it looks, so a
    notification between looking and waiting is never lost."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def waiter(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """True when ``event`` was set within ``seconds``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
        return True
    return False


class ChangeTail:
    """An org's change log as read by this process, shared by its streams."""

    def __init__(
        self,
        org_id: str,
        fetch: Fetch,
        head: Head,
        *,
        poll_s: float,
        on_idle: Callable[[ChangeTail], None] | None = None,
    ) -> None:
        self.org_id = org_id
        self._fetch = fetch
        self._head = head
        self.poll_s = poll_s
        self._on_idle = on_idle
        self._writes = Signal()  # local writes
        self._advanced = Signal()  # the tail read new entries
        self._entries: list[Entry] = []
        self._positions: list[int] = []
        # every committed entry in (_start, position] is in ``_entries``
        self._start = 0
        self.position: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.followers = 0
        self.reads = 0  # store reads by the tail (tests, the benchmark)

    def notify(self) -> None:
        """A memory of the org was committed by this process."""
        self._writes.notify()

    async def _run(self) -> None:
        q = MemoryQuery(org_id=self.org_id)
        while self.position is None:
            try:
                self.position = self._start = await self._head()
            except Exception:
                log.exception("change tail of %s: reading the head failed", self.org_id)
                await asyncio.sleep(_RETRY_S)
        self._started.set()
        while True:
            wake = self._writes.waiter()  # before the read: a write during it wakes us again
            try:
                self.reads += 1
                page = await self._fetch(self.position, q, TAIL_BATCH)
            except Exception:
                log.exception("change tail of %s: reading new memories failed", self.org_id)
                await asyncio.sleep(_RETRY_S)
                continue
            self._append(page)
            if not page.complete:
                continue
            await _wait(wake, self.poll_s)

    def _append(self, page: ChangePage) -> None:
        assert self.position is not None
        if page.position <= self.position:
            return
        for position, record in page.entries:
            self._entries.append((position, record))
            self._positions.append(position)
        self.position = page.position
        if len(self._entries) > 2 * KEEP:  # trimmed in steps: amortized O(1) per entry
            drop = len(self._entries) - KEEP
            self._start = self._positions[drop - 1]
            del self._entries[:drop], self._positions[:drop]
        self._advanced.notify()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _stop_if_idle(self) -> None:
        if self.followers > 0 or self._task is None:
            return
        task, self._task = self._task, None
        # reset before waiting for the task: a follower arriving meanwhile starts a new task,
        # which reads the head afresh
        self.position, self._started = None, asyncio.Event()
        self._entries, self._positions = [], []
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._on_idle is not None:
            self._on_idle(self)

    async def follow(self, after: int, q: MemoryQuery, wait_s: float) -> AsyncIterator[list[Entry]]:
        """The org's memories committed after position ``after`` that match ``q``, in commit
        order, as they come: each yielded list is the next entries; an empty list means
        nothing came for ``wait_s`` seconds (time for a heartbeat). Never ends by itself."""
        self.followers += 1
        self._ensure_running()
        loop = asyncio.get_running_loop()
        try:
            await self._started.wait()
            position = after
            deadline = loop.time() + wait_s
            while True:
                advanced = self._advanced.waiter()
                assert self.position is not None
                if position < self._start:  # older than what the tail keeps: read the store
                    page = await self._fetch(position, q, CATCH_UP_BATCH)
                    position = page.position
                    if page.entries:
                        yield page.entries
                        deadline = loop.time() + wait_s
                    continue
                tail = self.position
                first = bisect.bisect_right(self._positions, position)
                found = [e for e in self._entries[first:] if matches(e[1], q)]
                position = max(position, tail)
                if found:
                    yield found
                    deadline = loop.time() + wait_s
                    continue
                remaining = deadline - loop.time()
                if remaining > 0 and await _wait(advanced, remaining):
                    continue  # (new entries, maybe none matching: look again)
                yield []  # nothing for wait_s: time for a heartbeat
                deadline = loop.time() + wait_s
        finally:
            self.followers -= 1
            await self._stop_if_idle()


class ChangeTails:
    """The tails of this process, one per org with open streams."""

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s
        self._tails: dict[str, ChangeTail] = {}

    def get(self, org_id: str, fetch: Fetch, head: Head) -> ChangeTail:
        tail = self._tails.get(org_id)
        if tail is None:
            tail = ChangeTail(org_id, fetch, head, poll_s=self.poll_s, on_idle=self._forget)
            self._tails[org_id] = tail
        return tail

    def notify(self, org_id: str) -> None:
        tail = self._tails.get(org_id)
        if tail is not None:
            tail.notify()

    def _forget(self, tail: ChangeTail) -> None:
        if self._tails.get(tail.org_id) is tail and tail.followers == 0:
            del self._tails[tail.org_id]
