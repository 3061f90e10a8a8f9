"""Waiting for a pause in a burst of deletes before the work that finishes them (an SQLite
purge, a PostgreSQL VACUUM): one run after a forget's or a retention sweep's last batch, not
one per batch, but never later than a bound; a close ends the wait at once."""

from __future__ import annotations

import asyncio
import contextlib
import time

# A forget or a retention sweep deletes in batches a few ms apart: wait for a pause longer
# than that, but finish within MAX_DELAY_S however long the deletes go on.
QUIET_S = 0.5
MAX_DELAY_S = 30.0


class Pause:
    """``touch()`` at each event; ``wait()`` returns once none came for ``quiet_s`` (at most
    ``max_delay_s`` after it began), or at once after ``close()``."""

    def __init__(self, quiet_s: float = QUIET_S, max_delay_s: float = MAX_DELAY_S) -> None:
        self._quiet_s = quiet_s
        self._max_delay_s = max_delay_s
        self._last = 0.0
        self._closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def touch(self) -> None:
        self._last = time.monotonic()

    def close(self) -> None:
        self._closed.set()

    async def wait(self) -> None:
        first = time.monotonic()
        while not self._closed.is_set():
            left = min(self._last + self._quiet_s, first + self._max_delay_s) - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._closed.wait()
