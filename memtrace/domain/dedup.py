"""Exact dedup: the dedup key of a memory and the decision whether a memory is a duplicate.

A memory is a duplicate when a memory with the same dedup key exists whose time is less than
the window away from its own (docs/api.md, "Dedup").
"""

from __future__ import annotations

import hashlib


def derive_dedup_key(agent_id: str, event_type: str, session_id: str | None, content: str) -> str:
    """First 32 hex chars of SHA-256 over ``agent|event|session|first 200 bytes of content``.

    The 200-byte cut is on the UTF-8 encoding, so a multi-byte character may be split; the key
    is only compared for equality, never decoded.
    """
    head = content.encode("utf-8")[:200]
    prefix = f"{agent_id}|{event_type}|{session_id or ''}|".encode()
    return hashlib.sha256(prefix + head).hexdigest()[:32]


class DedupWindow:
    """Dedup decisions for one write group: the stored memories near the group's times (loaded
    by the store) plus the group's own new memories, so duplicates inside one batch are found
    too."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[str, list[tuple[int, str]]] = {}

    def duplicate_of(self, dedup_key: str, time: int, window: int | None = None) -> str | None:
        """The id of a memory with this dedup key less than the window away from ``time``
        (``window``: a narrower one than the window this was loaded with)."""
        previous = self._seen.get(dedup_key)
        if previous is None:
            return None
        width = self.window if window is None else window
        return next((mid for at, mid in previous if abs(at - time) < width), None)

    def add(self, dedup_key: str, time: int, memory_id: str) -> None:
        """Remember a stored (or just written) memory."""
        self._seen.setdefault(dedup_key, []).append((time, memory_id))
