"""Per-caller token buckets (abuse limit), clock-injected.

Each caller (an API key, or the client address when no key is sent) owns a bucket of
``burst`` tokens refilled at ``rate`` tokens per second; a request takes one token. In cluster
mode the limits are the cluster's: each of N replicas enforces its ``share`` (1/N) of them
(docs/deploy-cluster.md, "Rate limits"). The table
of buckets is bounded: the least recently used bucket is dropped first (a dropped bucket comes
back full, which only ever favours the caller, so the bound cannot lock anyone out).

:class:`RateLimiter` keeps the table in the process. :class:`SharedRateLimiter` keeps it in a
file every worker process of one ``memtrace serve --workers N`` maps (a shared-memory table
under a file lock), so a key gets its allowance once per server, whichever worker its requests
reach (docs/configuration.md, "Workers").
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_BUCKETS = 50_000


def _refill(tokens: float, updated: float, now: float, rate: float, burst: float) -> float:
    return min(burst, tokens + max(0.0, now - updated) * rate)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller.

    Args:
        rate: tokens added per second (``0`` disables limiting).
        burst: bucket capacity (requests allowed at once after an idle period).
        clock: monotonic seconds; injectable for tests.
        max_buckets: bound on remembered callers.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.share = 1.0  # this process's part of the limits (1/N of N replicas)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, caller: str) -> float:
        """Take one token for ``caller``.

        Returns:
            ``0.0`` when the request may go ahead, else the seconds until a token is available.
        """
        if not self.enabled:
            return 0.0
        now = self._clock()
        rate = self.rate * self.share
        burst = max(1.0, self.burst * self.share)
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(burst, now)
        else:
            bucket.tokens = _refill(bucket.tokens, bucket.updated, now, rate, burst)
            bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


_SLOT = struct.Struct("<16sdd")  # caller digest, tokens, last refill (monotonic seconds)
_PROBES = 8  # slots tried per caller; the least recently refilled of them is reused


class SharedRateLimiter:
    """The token buckets of :class:`RateLimiter` in a table shared by processes.

    ``path`` is a file of ``slots`` fixed-size slots that every process maps; a caller's
    bucket lives in one of the ``_PROBES`` slots after its digest's home slot, and an update
    takes an exclusive ``flock`` on the file for a few microseconds. The monotonic clock is
    the machine's, so every process reads the same time. ``namespace`` keeps limiters with
    different rates that share the file apart.
    """

    def __init__(
        self,
        path: Path,
        rate: float,
        burst: int,
        *,
        namespace: str = "",
        slots: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._namespace = namespace
        self._slots = slots
        self._clock = clock
        size = slots * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # zero-filled: every slot empty
        self._map = mmap.mmap(self._fd, size)
        self.share = 1.0  # this server's part of the limits (1/N of N replicas)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def acquire(self, caller: str) -> float:
        """Take one token for ``caller``; see :meth:`RateLimiter.acquire`."""
        if not self.enabled:
            return 0.0
        digest = hashlib.blake2b(
            (self._namespace + "\0" + caller).encode("utf-8", "replace"), digest_size=16
        ).digest()
        home = int.from_bytes(digest[:8], "little") % self._slots
        rate = self.rate * self.share
        burst = max(1.0, self.burst * self.share)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            now = self._clock()
            found, oldest, oldest_at = -1, -1, math.inf
            for probe in range(_PROBES):
                slot = (home + probe) % self._slots
                key, tokens, updated = _SLOT.unpack_from(self._map, slot * _SLOT.size)
                if key == digest:
                    found = slot
                    tokens = _refill(tokens, updated, now, rate, burst)
                    break
                if updated < oldest_at:  # an empty slot (all zero) is the oldest of all
                    oldest, oldest_at = slot, updated
            if found < 0:  # new, or dropped from the table: a full bucket
                found, tokens = oldest, burst
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            _SLOT.pack_into(self._map, found * _SLOT.size, digest, tokens, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return wait


def caller_identity(api_key: str | None, client_host: str | None) -> str:
    """The bucket name of a request: a digest of its key (never the key itself), else its
    client address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()[:32]
    return "addr:" + (client_host or "unknown")
