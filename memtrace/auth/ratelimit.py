"""Per-caller token buckets (abuse limit): pure, clock-injected, no I/O.

Each caller (an API key, or the client address when no key is sent) owns a bucket of
``burst`` tokens refilled at ``rate`` tokens per second; a request takes one token. The table
of buckets is bounded: the least recently used bucket is dropped first (a dropped bucket comes
back full, which only ever favours the caller, so the bound cannot lock anyone out).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 50_000


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
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def caller_identity(api_key: str | None, client_host: str | None) -> str:
    """The bucket name of a request: a digest of its key (never the key itself), else its
    client address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()[:32]
    return "addr:" + (client_host or "unknown")
