"""Parsing of the ``since``/``until`` parameters into microsecond bounds.

Accepted forms: a relative duration ``<n><unit>`` (unit one of ``s m h d w``, meaning "that long
before now"), an ISO 8601 timestamp (no zone means UTC), or ``now`` (``until`` only).
Windows are half-open: ``since <= time < until``.
"""

from __future__ import annotations

import re
from datetime import datetime

from memtrace.domain.errors import InvalidInput
from memtrace.domain.timestamps import to_us

_RELATIVE = re.compile(r"^([0-9]{1,9})([smhdw])$")  # ASCII digits (\d is any script)
_UNIT_US = {
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_MIN_US = 0  # 1970-01-01: memories cannot be older than the epoch
_MAX_LEN = 64


def parse_time_bound(value: str, field: str, now: int, *, allow_now: bool) -> int:
    """Parse one bound into microseconds.

    Args:
        value: the raw parameter text.
        field: the parameter name, used in the error message.
        now: the current time in microseconds (relative forms count back from it).
        allow_now: whether the literal ``now`` is accepted.

    Returns:
        The bound in microseconds since the epoch.

    Raises:
        InvalidInput: the text is not one of the accepted forms.
    """
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        raise InvalidInput(f"{field}: expected a duration like 30m, 2h, 7d or an ISO 8601 time")
    if text == "now":
        if allow_now:
            return now
        raise InvalidInput(f"{field}: 'now' is only accepted for until")
    match = _RELATIVE.match(text)
    if match:
        return max(_MIN_US, now - int(match.group(1)) * _UNIT_US[match.group(2)])
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(
            f"{field}: expected a duration like 30m, 2h, 7d or an ISO 8601 time, got {text!r}"
        ) from None
    return max(_MIN_US, to_us(parsed))


def parse_window(
    since: str | None, until: str | None, now: int, *, default_since: str | None = None
) -> tuple[int | None, int | None]:
    """Parse ``since``/``until`` (either may be absent) into a half-open window.

    Raises:
        InvalidInput: a bound is malformed, or ``since`` is after ``until``.
    """
    since_text = since if since is not None else default_since
    lo = parse_time_bound(since_text, "since", now, allow_now=False) if since_text else None
    hi = parse_time_bound(until, "until", now, allow_now=True) if until else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput("since: must not be after until")
    return lo, hi
