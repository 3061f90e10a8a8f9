"""Time representation: memories carry integer microseconds since the Unix epoch (UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """Current UTC time in integer microseconds."""
    return time.time_ns() // 1000


def to_us(value: datetime) -> int:
    """A datetime (naive = UTC) as integer microseconds since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """Integer microseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


_HOURS: dict[int, str] = {}


def _hour(hours: int) -> str:
    text = _HOURS.get(hours)
    if text is None:
        if len(_HOURS) >= 16384:
            _HOURS.clear()
        text = _HOURS[hours] = time.strftime("%Y-%m-%dT%H:", time.gmtime(hours * 3600))
    return text


def format_us(us: int) -> str:
    """RFC 3339 UTC with microseconds and a ``Z`` suffix (the wire format of ``time``).

    Hot on every read and in every write's response: the per-hour prefix is cached (memories
    spread over a month share 720 of them; a per-second cache missed almost every time)."""
    seconds, fraction = divmod(us, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    return f"{_HOURS.get(hours) or _hour(hours)}{minute:02d}:{second:02d}.{fraction:06d}Z"


def format_dt(value: datetime) -> str:
    """An aware datetime in the wire format."""
    return format_us(to_us(value))


def format_seconds(us: int) -> str:
    """UTC to the second, as used inside context markdown: ``2026-11-22T03:00:05Z``."""
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ")
