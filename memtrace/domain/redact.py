"""Redaction of API-key-shaped text, applied to every log line and every error body.

Keys are never logged or echoed on purpose; this catches the accidents: a client that puts a
key in a URL or a field, and an error message that quotes the offending input. Log lines also
lose SSE session ids (the access log prints ``/messages/?session_id=…``).
"""

from __future__ import annotations

import re
from typing import Any

# ``mtk_`` + base64url; 16+ characters also catches truncated keys.
_KEY_LIKE = re.compile(r"mtk_[A-Za-z0-9_-]{16,}")
REDACTED = "mtk_[redacted]"


def redact(text: str) -> str:
    """``text`` with anything shaped like an API key replaced by ``mtk_[redacted]``."""
    return _KEY_LIKE.sub(REDACTED, text) if "mtk_" in text else text


# Legacy SSE session ids: 32 hex digits (``/messages/?session_id=…``) or a UUID in the MCP
# SDK's own messages. Whoever holds one could try to post into the session.
_SESSION_LIKE = re.compile(
    r"(?<![0-9A-Za-z])([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(?![0-9A-Za-z])"
)
REDACTED_SESSION = "[session-redacted]"


def redact_log_line(text: str) -> str:
    """A log line with keys and anything shaped like an SSE session id redacted."""
    return _SESSION_LIKE.sub(REDACTED_SESSION, redact(text))


def redact_value(value: Any) -> Any:
    """:func:`redact` applied to every string inside lists and dicts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value
