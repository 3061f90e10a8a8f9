"""Validating memory writes without pydantic for the common case, with pydantic's answers.

A batch of 1,000 memories spends ~9 us per memory in pydantic (most of it in the ``{0,127}``
patterns of the id fields), a fifth of the server's CPU per memory. :func:`parse_memory` and
:func:`parse_batch` check the usual shapes of a :class:`~memtrace.domain.models.MemoryCreate`
in plain Python (the same patterns, limits and after-validators) and build the model without
running pydantic. Anything they do not recognise as certainly valid, including every invalid
input, goes to ``parse_model`` (pydantic): errors are pydantic's own, by construction, and a
test holds the two paths to the same results (tests/test_hot_path_helpers.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from memtrace.domain.models import (
    AGENT_ID_PATTERN,
    EVENT_TYPE_PATTERN,
    MAX_DEDUP_KEY,
    MEMORY_TYPES,
    REF_ID_PATTERN,
    TAG_PATTERN,
    MemoryBatchCreate,
    MemoryCreate,
    check_json_object_size,
    dedupe_tags,
    parse_model,
)


def _full(pattern: str) -> re.Pattern[str]:
    """``^…$`` as a whole-string match (``$`` in Python would also match before a final
    newline; the Rust regex pydantic uses does not)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


_AGENT = _full(AGENT_ID_PATTERN).fullmatch
_EVENT = _full(EVENT_TYPE_PATTERN).fullmatch
_TAG = _full(TAG_PATTERN).fullmatch
_REF = _full(REF_ID_PATTERN).fullmatch
# The one timestamp shape taken here: date, "T", time to the second, up to 6 fraction digits,
# then "Z" or an offset. Others (a space, no zone, more digits, …) are pydantic's to parse.
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-]([0-9]{2}):([0-9]{2}))"
).fullmatch
_FIELDS = frozenset(MemoryCreate.model_fields)
_MEMORY_TYPES = frozenset(MEMORY_TYPES)
_MISSING: Any = object()
_new = object.__new__
_set = object.__setattr__
_fromisoformat = datetime.fromisoformat


class _Unsure(Exception):
    """The input is not a shape the fast path knows: let pydantic decide."""


def _ref(value: Any, check: Any) -> str | None:
    if value is None or value == "":
        return None
    if type(value) is not str or not check(value):
        raise _Unsure
    return value


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    found = _TIME(value) if type(value) is str else None
    # (hours 0-23, minutes 0-59 in the offset; the date and time themselves are checked by
    # datetime: day 31 of a 30-day month, hour 24 or second 60 raise)
    if found is None or (found[1] is not None and (found[1] > "23" or found[2] > "59")):
        raise _Unsure
    try:
        return _fromisoformat(value)
    except ValueError:
        raise _Unsure from None


def _memory(data: Any) -> MemoryCreate:
    """A MemoryCreate built from ``data`` when it is certainly valid; else :class:`_Unsure`.
    (Straight-line on purpose: it runs once per memory of every batch.)"""
    if type(data) is not dict:
        raise _Unsure
    get = data.get
    agent_id, content = get("agent_id"), get("content")
    if type(agent_id) is not str or type(content) is not str or not content or not _AGENT(agent_id):
        raise _Unsure
    given = {"agent_id", "content"}
    session_id = metadata = tags = importance = dedup_key = parent_id = when = None
    memory_type, event_type = "episodic", "general"
    if len(data) > 2:
        given.update(_FIELDS.intersection(data))
        if (value := get("session_id")) is not None:
            session_id = _ref(value, _AGENT)
        if (memory_type_ := get("memory_type", _MISSING)) is not _MISSING:
            if memory_type_ is None:
                given.discard("memory_type")  # null means the default, as if absent
            elif memory_type_ != "":
                if type(memory_type_) is not str or memory_type_ not in _MEMORY_TYPES:
                    raise _Unsure
                memory_type = memory_type_
        if (event_type_ := get("event_type", _MISSING)) is not _MISSING:
            if event_type_ is None:
                given.discard("event_type")
            elif event_type_ != "":
                if type(event_type_) is not str or not _EVENT(event_type_):
                    raise _Unsure
                event_type = event_type_
        if (value := get("metadata")) is not None:
            if type(value) is not dict:
                raise _Unsure
            metadata = _after(check_json_object_size, value)
        if (value := get("tags")) is not None:
            if type(value) is not list:
                raise _Unsure
            for tag in value:
                if type(tag) is not str or not _TAG(tag):
                    raise _Unsure
            tags = _after(dedupe_tags, value)
        if (value := get("importance")) is not None:
            kind = type(value)
            if (kind is not float and kind is not int) or not 0.0 <= value <= 1.0:
                raise _Unsure
            importance = float(value)
        if (value := get("dedup_key")) is not None and value != "":
            if type(value) is not str or len(value) > MAX_DEDUP_KEY:
                raise _Unsure
            dedup_key = value
        if (value := get("parent_id")) is not None:
            parent_id = _ref(value, _REF)
        if (value := get("time")) is not None:
            when = _time(value)
    model = _new(MemoryCreate)
    _set(
        model,
        "__dict__",
        {
            "agent_id": agent_id,
            "content": content,
            "session_id": session_id,
            "memory_type": memory_type,
            "event_type": event_type,
            "metadata": metadata,
            "tags": tags,
            "importance": importance,
            "dedup_key": dedup_key,
            "parent_id": parent_id,
            "time": when,
        },
    )
    _set(model, "__pydantic_fields_set__", given)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _after(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except (ValueError, TypeError):
        raise _Unsure from None


def parse_memory(data: Any) -> MemoryCreate:
    """``parse_model(MemoryCreate, data)``, faster for the usual bodies (same result, same
    errors: anything unusual is validated by pydantic)."""
    try:
        return _memory(data)
    except _Unsure:
        return parse_model(MemoryCreate, data)


def parse_batch(data: Any) -> list[MemoryCreate]:
    """The memories of ``parse_model(MemoryBatchCreate, data)``, faster for the usual bodies;
    the whole batch goes to pydantic when one item is unusual (its errors list every bad
    item)."""
    items = data.get("memories") if type(data) is dict else None
    if type(items) is list and items:
        try:
            return [_memory(item) for item in items]
        except _Unsure:
            pass
    return parse_model(MemoryBatchCreate, data).memories
