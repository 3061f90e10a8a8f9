"""Secrets at rest: the master key that encrypts Arc API keys (SPEC §8)."""

from __future__ import annotations

import base64
import secrets


def generate_master_key() -> str:
    """A new ``MEMTRACE_MASTER_KEY``: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()
