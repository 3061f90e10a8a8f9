"""Change positions on the wire: a memory's place in its org's commit order, made opaque.

The feed (``GET /api/v1/feed``) and the live stream (``GET /api/v1/stream``, the SSE ``id:``)
hand these out; a reader passes one back to continue strictly after it (docs/feed.md). A
position belongs to one org's store: it means nothing to another org, and a copy of the org to
another backend (``memtrace org copy-data``) numbers its memories anew.

Format (opaque to clients; only this module reads it): ``p1.`` + unpadded base64url of the
decimal position.
"""

from __future__ import annotations

from memtrace.domain.cursor import unwrap_token, wrap_token
from memtrace.domain.errors import InvalidInput

PREFIX = "p1."
MAX_POSITION_CHARS = 64
_MAX = 1 << 62


def encode_position(position: int) -> str:
    """The wire form of a change position (0: before the org's first memory)."""
    return wrap_token(PREFIX, str(position))


def decode_position(text: str, field: str = "cursor") -> int:
    """The change position ``text`` names.

    Raises:
        InvalidInput: ``<field>: …`` when it is not a position this server issued.
    """
    malformed = InvalidInput(
        f"{field}: malformed; pass a position this server returned (cursor, or an event id) "
        "unchanged"
    )
    raw = unwrap_token(text, PREFIX, MAX_POSITION_CHARS)
    if raw is None or not raw.isdigit() or len(raw) > 19:
        raise malformed
    position = int(raw)
    if position >= _MAX or encode_position(position) != text:
        raise malformed
    return position
