"""Reader threads shared by every SQLite file of the process, scheduled fairly between orgs.

Every read runs on a *lane*: an org's files (its memories, its Arc outbox, its rows in the
metadata DB) share the org's lane; the server's own bookkeeping (key reloads, health checks)
runs on :data:`SYSTEM_LANE`. At most ``per_lane`` reads of one lane run at once, and a free
thread takes the next read from the waiting lanes in turn (round robin), so one org's slow
reads queue behind each other, never in front of another org's. System reads go first, and
tenant reads never occupy the last thread, so a key reload or a probe never waits behind
tenants (docs/configuration.md, "Fairness between orgs").
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

SYSTEM_LANE = ":system"  # never an org id (org ids match ^[A-Za-z0-9_-]+$)


@dataclass(slots=True)
class _Read:
    lane: str
    fn: Callable[[], Any]
    future: Future[Any]


class ReadPool:
    """A fixed set of reader threads with per-lane concurrency caps and round-robin turns.

    Args:
        threads: reader threads (created on first use).
        per_lane: reads of one lane running at once.
    """

    def __init__(self, threads: int = 8, per_lane: int = 2) -> None:
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._size = threads
        self._per_lane = per_lane
        self._pending: dict[str, deque[_Read]] = {}
        self._running: dict[str, int] = {}
        self._turns: deque[str] = deque()  # tenant lanes with a read they may start now
        self._in_turns: set[str] = set()
        self._tenant_running = 0

    def configure(self, threads: int, per_lane: int) -> None:
        """Apply the process's settings (the pool is shared by every runtime of a process)."""
        with self._cond:
            self._size = max(2, threads)
            self._per_lane = max(1, per_lane)
            for lane in list(self._pending):
                self._offer(lane)
            self._cond.notify_all()

    @property
    def per_lane(self) -> int:
        return self._per_lane

    def queued(self) -> int:
        """Reads waiting for a thread (all lanes)."""
        with self._cond:
            return sum(len(reads) for reads in self._pending.values())

    def submit(self, lane: str, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` on ``lane``; a cancelled future that has not started never runs."""
        future: Future[T] = Future()
        with self._cond:
            self._pending.setdefault(lane, deque()).append(_Read(lane, fn, future))
            self._offer(lane)
            if len(self._threads) < self._size:
                self._spawn()
            self._cond.notify()
        return future

    async def run(self, lane: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a reader thread under ``lane`` and return its result."""
        return await asyncio.wrap_future(self.submit(lane, fn))

    # -- internals (called with the condition held) -------------------------------------------

    def _offer(self, lane: str) -> None:
        """Give a tenant lane a turn if it has a read waiting and room to start it."""
        if (
            lane != SYSTEM_LANE
            and lane not in self._in_turns
            and self._pending.get(lane)
            and self._running.get(lane, 0) < self._per_lane
        ):
            self._turns.append(lane)
            self._in_turns.add(lane)

    def _spawn(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"sqlite-read-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _take(self) -> _Read | None:
        system = self._pending.get(SYSTEM_LANE)
        if system:
            return self._start(SYSTEM_LANE, system)
        # One thread stays free of tenant reads: system reads never wait behind tenants.
        if not self._turns or self._tenant_running >= self._size - 1:
            return None
        lane = self._turns.popleft()
        self._in_turns.discard(lane)
        read = self._start(lane, self._pending[lane])
        self._tenant_running += 1
        self._offer(lane)  # back of the line if it has more to do and room to do it
        return read

    def _start(self, lane: str, reads: deque[_Read]) -> _Read:
        read = reads.popleft()
        if not reads:
            del self._pending[lane]
        self._running[lane] = self._running.get(lane, 0) + 1
        return read

    def _finish(self, lane: str) -> None:
        left = self._running[lane] - 1
        if left:
            self._running[lane] = left
        else:
            del self._running[lane]
        if lane != SYSTEM_LANE:
            self._tenant_running -= 1
        self._offer(lane)
        self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                read = self._take()
                while read is None:
                    self._cond.wait()
                    read = self._take()
            try:
                if read.future.set_running_or_notify_cancel():
                    try:
                        result = read.fn()
                    except BaseException as exc:
                        read.future.set_exception(exc)
                    else:
                        read.future.set_result(result)
            finally:
                with self._cond:
                    self._finish(read.lane)


READ_POOL = ReadPool()
"""The process's reader threads (configured from the settings when a runtime starts)."""
