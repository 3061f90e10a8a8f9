"""Cursors of list and search pages: a position in the org's (time, id) order, made opaque.

A cursor names the last memory of a page by its position ``(time, id)``; the next page holds
what comes strictly after that position in the query's order. Positions never move when
memories are written or deleted, so a walk by cursor neither skips nor repeats one, however
deep it goes (docs/api.md, "Cursor paging"). The cursor also carries a short fingerprint of the
query it was issued for (filters and order): a cursor replayed with other filters is refused
instead of silently continuing a different walk.

Format (opaque to clients; only this module reads it): ``c1.`` + unpadded base64url of
``<time>|<id>|<fingerprint>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence

from memtrace.domain.errors import InvalidInput
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import MAX_CURSOR_CHARS

PREFIX = "c1."
_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")
_MAX_TIME = 1 << 62

Position = tuple[int, str]


def fingerprint(parts: Iterable[object]) -> str:
    """12 hex characters identifying a query's filters and order."""
    return hashlib.sha256(repr(tuple(parts)).encode()).hexdigest()[:12]


def wrap_token(prefix: str, raw: str) -> str:
    """An opaque wire token: ``prefix`` + unpadded base64url of ``raw`` (cursors here, change
    positions in :mod:`memtrace.domain.positions`)."""
    return prefix + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def unwrap_token(text: str, prefix: str, max_chars: int) -> str | None:
    """The ``raw`` of :func:`wrap_token`, or ``None`` when ``text`` is not such a token."""
    if len(text) > max_chars or not text.startswith(prefix):
        return None
    body = text[len(prefix) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None


def encode_cursor(position: Position, query: str) -> str:
    """The cursor after ``position`` for the query with fingerprint ``query``."""
    return wrap_token(PREFIX, f"{position[0]}|{position[1]}|{query}")


def decode_cursor(text: str, query: str) -> Position:
    """The position a cursor names.

    Raises:
        InvalidInput: ``cursor: …`` when it is malformed or was issued for another query.
    """
    malformed = InvalidInput(
        "cursor: malformed; pass the next_cursor of the previous page unchanged"
    )
    raw = unwrap_token(text, PREFIX, MAX_CURSOR_CHARS)
    if raw is None:
        raise malformed
    parts = raw.split("|")
    if len(parts) != 3 or not parts[0].isdigit() or not _ID.match(parts[1]):
        raise malformed
    if not _FINGERPRINT.match(parts[2]) or int(parts[0]) >= _MAX_TIME:
        raise malformed
    if parts[2] != query:
        raise InvalidInput(
            "cursor: was issued for a different query (filters or order changed); "
            "start again without a cursor"
        )
    return int(parts[0]), parts[1]


def cursor_position(cursor: str | None, offset: int, query: str) -> Position | None:
    """Where a page starts: after the cursor's position, or ``None`` (offset paging).

    Raises:
        InvalidInput: a bad cursor, or a cursor together with an offset.
    """
    if cursor is None:
        return None
    if offset:
        raise InvalidInput("offset: cannot be combined with cursor (the cursor is the position)")
    return decode_cursor(cursor, query)


def next_cursor(rows: Sequence[MemoryRecord], limit: int, query: str) -> tuple[bool, str | None]:
    """(has_more, the next page's cursor) of a page read with one row of look-ahead."""
    if len(rows) <= limit:
        return False, None
    last = rows[limit - 1]
    return True, encode_cursor((last.time, last.id), query)
