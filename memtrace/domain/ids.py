"""Identifier generation: memory ids (ULID), session ids, org ids and key ids."""

from __future__ import annotations

import os
import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1

# The org every deployment has: created on the first start; the org of auth-disabled mode.
DEFAULT_ORG_ID = "org_default"
ORG_ID_PREFIX = "org_"  # every org id starts with it, and no org name may
MEMORY_PREFIX = "mem_"
SESSION_PREFIX = "sess_"


# Every 10-bit value as its two Crockford characters: 13 lookups instead of 26 shifts.
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_SHIFTS = (120, 110, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0)


_DECODE = {char: index for index, char in enumerate(_CROCKFORD)}


def _decode_ulid(text: str) -> int | None:
    """The 128-bit value of 26 Crockford base32 characters, or None when ``text`` is not one."""
    if len(text) != 26:
        return None
    value = 0
    for char in text:
        digit = _DECODE.get(char)
        if digit is None:
            return None
        value = (value << 5) | digit
    return value if value >> 128 == 0 else None


def _encode_ulid(value: int) -> str:
    """Encode a 128-bit integer as 26 Crockford base32 characters (hot: one per memory)."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


class MonotonicUlid:
    """Thread-safe ULID generator whose output is strictly increasing within a process.

    Stores assign ids in their single writer, so id order equals insertion order. That makes
    "ORDER BY time, id" (Arc) and "ORDER BY time, rowid" (SQLite) the same order for ties.
    Several processes may write one store (``memtrace serve --workers``): the writer shows the
    generator the newest stored id (:meth:`observe`) inside its transaction, so ids stay
    increasing across processes too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0
        self._last_id = ""

    def observe(self, memory_id: str) -> None:
        """Generate only ids above ``memory_id`` from now on (an id another process wrote)."""
        if memory_id == self._last_id or not memory_id.startswith(MEMORY_PREFIX):
            return  # our own latest (the common case), or not one of ours
        value = _decode_ulid(memory_id[len(MEMORY_PREFIX) :])
        if value is None:
            return
        ms, rand = value >> _RANDOM_BITS, value & _RANDOM_MAX
        with self._lock:
            if (ms, rand) > (self._last_ms, self._last_random):
                self._last_ms, self._last_random = ms, rand

    def new(self) -> str:
        """Return a new ``mem_``-prefixed ULID."""
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._last_random += 1
                if self._last_random > _RANDOM_MAX:  # 2^80 ids in one ms: move the clock on
                    now_ms += 1
                    self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            else:
                # Half the random space leaves room to increment without overflow.
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = now_ms
            value = (now_ms << _RANDOM_BITS) | self._last_random
            self._last_id = MEMORY_PREFIX + _encode_ulid(value)
            return self._last_id


memory_ids = MonotonicUlid()


def memory_id_from(ms: int, random80: int) -> str:
    """The memory id of a given millisecond and 80 other bits (ids derived for rows that were
    stored without one, e.g. by the Go memtrace)."""
    return MEMORY_PREFIX + _encode_ulid((ms << _RANDOM_BITS) | (random80 & _RANDOM_MAX))


def memory_id_ms(memory_id: str) -> int | None:
    """The millisecond a memory id was made in, or None when it is not a memory id."""
    body = memory_id.removeprefix(MEMORY_PREFIX)
    if len(body) != 26 or body == memory_id or any(ch not in _CROCKFORD for ch in body):
        return None
    value = 0
    for ch in body:
        value = value * 32 + _CROCKFORD.index(ch)
    return value >> _RANDOM_BITS


def new_session_id() -> str:
    """``sess_`` + 24 lowercase hex characters."""
    return SESSION_PREFIX + secrets.token_hex(12)


def new_agent_id() -> str:
    """``agent_`` + 24 lowercase hex characters (the Go memtrace's agent ids), for agents
    registered under a name that is not a valid id."""
    return "agent_" + secrets.token_hex(12)


def new_org_id() -> str:
    """``org_`` + 16 lowercase hex characters."""
    return ORG_ID_PREFIX + secrets.token_hex(8)


def new_key_id() -> str:
    """Public identifier of an API key (not the secret): ``key_`` + 16 hex characters."""
    return "key_" + secrets.token_hex(8)
