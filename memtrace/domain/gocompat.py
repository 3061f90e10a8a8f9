"""What the Go memtrace accepted where memtrace answers 400: each hint says what Go did and
what to send instead, appended to the validation error of that field (docs/api.md, "Clients
written for the Go server"). memtrace keeps these 400s: each one protects stored data or stops
a request from silently meaning something else."""

from __future__ import annotations

import re
from typing import Any

import orjson

GO_HINTS: dict[str, str] = {
    "importance": "the Go memtrace stored any number; send a value from 0 to 1",
    "min_importance": "the Go memtrace compared with any number; send a value from 0 to 1",
    "limit": "the Go memtrace silently used its default above 1000; send 1-1000 and page "
    "with offset",
    "memory_types": "the Go memtrace matched nothing for an unknown type; send episodic, "
    "decision, entity or session",
    "include_types": "the Go memtrace matched nothing for an unknown type; send episodic, "
    "decision, entity or session",
    "order": "the Go memtrace read anything but 'asc' as 'desc'; send asc or desc",
    "max_tokens": "the Go memtrace ignored max_tokens; leave it out or send 1-100000",
}
_LEAF = re.compile(r"([A-Za-z_]+)(?:\[\d+\])*$")


def go_hint(field: str) -> str | None:
    """The hint for a field named like ``memories[3].importance`` or ``memory_types[0]``."""
    match = _LEAF.search(field)
    return GO_HINTS.get(match.group(1)) if match else None


def go_json_object(text: Any) -> dict[str, Any] | None:
    """A JSON object as the Go memtrace stored it (``metadata_json``, ``config_json``): ``""``,
    ``{}``, NULL or anything not an object means none."""
    if not isinstance(text, str) or text in ("", "{}"):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value else None
