"""Caps on long-lived streams, shared by every kind: legacy MCP SSE (``GET /sse``) and the live
feed (``GET /api/v1/stream``). Open streams are counted per API key
(``limits.streams_per_key``), per org (``limits.streams_per_org``) and in all
(``limits.max_streams``, at most half of ``server.max_connections``, so streams never take
every connection slot from REST, ``/mcp`` and the probes); past a cap the answer is 429 with
``Retry-After``. The runtime holds one :class:`StreamCounts` per process.
"""

from __future__ import annotations

from collections import Counter

from memtrace.auth.keys import Principal
from memtrace.config import Settings

STREAM_RETRY_S = 5


class StreamCounts:
    """Open streams per key, per org and in all; ``open`` refuses past a cap."""

    def __init__(self, per_key: int, per_org: int, total: int) -> None:
        self.per_key, self.per_org, self.total = per_key, per_org, total
        self._keys: Counter[str] = Counter()
        self._orgs: Counter[str] = Counter()
        self.open_now = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamCounts:
        limits = settings.limits
        total = min(limits.max_streams, max(1, settings.server.max_connections // 2))
        return cls(limits.streams_per_key, limits.streams_per_org, total)

    def open(self, principal: Principal) -> str | None:
        """Count a new stream, or say which cap refuses it."""
        key = principal.key_id or principal.org_id
        if self.open_now >= self.total:
            return f"the server has {self.total} streams open (limits.max_streams)"
        if self._orgs[principal.org_id] >= self.per_org:
            return f"this org has {self.per_org} streams open (limits.streams_per_org)"
        if self._keys[key] >= self.per_key:
            return f"this API key has {self.per_key} streams open (limits.streams_per_key)"
        self._keys[key] += 1
        self._orgs[principal.org_id] += 1
        self.open_now += 1
        return None

    def close(self, principal: Principal) -> None:
        key = principal.key_id or principal.org_id
        for counter, name in ((self._keys, key), (self._orgs, principal.org_id)):
            counter[name] -= 1
            if counter[name] <= 0:
                del counter[name]  # the tables hold only keys and orgs with open streams
        self.open_now -= 1
