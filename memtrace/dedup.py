"""Dedup keys (SPEC §5): exact duplicates are detected by key inside a time window."""

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
