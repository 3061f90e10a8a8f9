"""The per-memory helpers made cheaper for throughput keep their exact behaviour."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memtrace.domain import hotpath
from memtrace.domain.errors import InvalidInput
from memtrace.domain.ids import _CROCKFORD, _encode_ulid
from memtrace.domain.models import (
    ListParams,
    MemoryBatchCreate,
    MemoryCreate,
    SearchRequest,
    parse_model,
)


def _reference_ulid(value: int) -> str:
    """The plain definition: 26 characters of 5 bits each, most significant first."""
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_ulid_encoding_matches_the_definition() -> None:
    rng = random.Random(7)
    values = [0, 1, 31, 32, 1023, 1024, (1 << 128) - 1, 1 << 127]
    values += [rng.getrandbits(128) for _ in range(5000)]
    for value in values:
        assert _encode_ulid(value) == _reference_ulid(value)


def test_null_means_default_only_where_the_default_is_not_null() -> None:
    item = MemoryCreate.model_validate(
        {"agent_id": "a1", "content": "x", "memory_type": None, "event_type": None, "tags": None}
    )
    assert (item.memory_type, item.event_type, item.tags) == ("episodic", "general", None)
    params = ListParams.model_validate({"limit": None, "order": None, "agent_id": None})
    assert (params.limit, params.order, params.agent_id) == (100, "desc", None)
    assert SearchRequest.model_validate({"limit": None}).limit == SearchRequest().limit


def test_input_without_nulls_is_validated_unchanged() -> None:
    data = {"agent_id": "a1", "content": "x", "memory_type": "decision", "unknown": 1}
    item = MemoryCreate.model_validate(data)
    assert item.memory_type == "decision"
    assert data == {"agent_id": "a1", "content": "x", "memory_type": "decision", "unknown": 1}


# --- the fast path of memory validation (memtrace/domain/hotpath.py) ------------------------

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_IDS = st.sampled_from(["a", "agent_1", "Agent-2", "1bad", "a b", "agent\n", "", "x" * 129])
_TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.5Z",
            "2026-01-02T03:04:05.123456+02:30",
            "2026-01-02T03:04:05-00:00",
            "2026-01-02T03:04:05+23:59",
            "2026-01-02T03:04:05+24:00",
            "2026-01-02T03:04:05+01:75",
            "2026-02-30T00:00:00Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2026-01-02 03:04:05Z",
            "2026-01-02T03:04:05",
            "2026-01-02",
            "2026-01-02T03:04:05.1234567Z",
            "\u0662\u0660\u0662\u0666-01-02T03:04:05Z",
            "1700000000",
        ]
    ),
    _TEXT,
    st.integers(),
    st.none(),
)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "agent_id": _IDS,
    "content": st.one_of(_TEXT, st.integers()),
    "session_id": st.one_of(_IDS, st.none()),
    "memory_type": st.sampled_from(["episodic", "decision", "", None, "Episodic", 3]),
    "event_type": st.sampled_from(["general", "page_crawled", "", None, "bad-type", "_x"]),
    "metadata": st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=3),
        st.just({"big": 2**70}),
        st.just({"long": "x" * 17_000}),
        st.just([1]),
    ),
    "tags": st.one_of(
        st.none(),
        st.lists(st.sampled_from(["ops", "a.b", "bad tag", "", "x" * 65]), max_size=4),
        st.just([f"t{i}" for i in range(40)]),
        st.just("ops"),
    ),
    "importance": st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-1, 2),
        st.booleans(),
        st.just("0.5"),
    ),
    "dedup_key": st.one_of(st.none(), _TEXT, st.just("k" * 129), st.integers()),
    "parent_id": st.one_of(st.none(), st.sampled_from(["p1", "mem_01", "bad id", ""])),
    "time": _TIMES,
    "unknown": st.integers(),
}


_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional=_VALUES),  # anything
    st.fixed_dictionaries(  # valid required fields, the others anything
        {"agent_id": st.sampled_from(["a", "agent_1", "Agent-2"]), "content": _TEXT},
        optional={k: v for k, v in _VALUES.items() if k not in ("agent_id", "content")},
    ),
)


@settings(max_examples=4000, deadline=None, derandomize=True)
@given(_BODIES)
def test_the_fast_path_accepts_only_what_pydantic_accepts_and_builds_the_same_model(
    data: dict[str, Any],
) -> None:
    try:
        fast: MemoryCreate | None = hotpath._memory(data)
    except hotpath._Unsure:
        fast = None
    try:
        slow: MemoryCreate | None = MemoryCreate.model_validate(data)
    except ValidationError:
        slow = None
    if fast is None:
        return  # pydantic decides (and reports the errors)
    assert slow is not None, data
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    if slow.time is not None:
        assert fast.time is not None and fast.time.utcoffset() == slow.time.utcoffset()


def test_the_fast_path_takes_the_usual_bodies() -> None:
    """Typical REST bodies never reach pydantic (else the fast path silently costs extra)."""
    usual = [
        {"agent_id": "crawler", "content": "fetched the page"},
        {
            "agent_id": "agent_007",
            "content": "refund approved",
            "session_id": "s-1",
            "memory_type": "decision",
            "event_type": "ticket_updated",
            "metadata": {"reasoning": "policy 4.2", "amount": 12.5},
            "tags": ["billing", "vip", "billing"],
            "importance": 0.8,
            "time": "2026-11-30T10:00:00.123456Z",
            "dedup_key": "order-42",
            "parent_id": "mem_01ABC",
        },
    ]
    for body in usual:
        assert hotpath._memory(body).model_dump() == MemoryCreate.model_validate(body).model_dump()
    parsed = hotpath.parse_batch({"memories": usual})
    assert [m.agent_id for m in parsed] == ["crawler", "agent_007"]


def test_errors_are_pydantics_own() -> None:
    bad = {"memories": [{"agent_id": "ok", "content": "x"}, {"agent_id": "1bad", "content": ""}]}
    with pytest.raises(InvalidInput) as fast:
        hotpath.parse_batch(bad)
    with pytest.raises(InvalidInput) as slow:
        parse_model(MemoryBatchCreate, bad)
    assert fast.value.to_body() == slow.value.to_body()
    with pytest.raises(InvalidInput, match="agent_id"):
        hotpath.parse_memory({"agent_id": "agent\n", "content": "x"})


def test_long_digit_run_check_matches_the_regex_it_replaces() -> None:
    import re

    from memtrace.domain.jsonbody import _has_long_digit_run

    regex = re.compile(rb"[0-9]{19}")
    bodies = [b"", b"1" * 18, b"1" * 19, b"x" + b"9" * 19 + b"y", b"0" * 18 + b" 0", b"12:34"]
    bodies += [bytes([48 + (i * 7) % 11]) * (i % 23) + b"," for i in range(200)]
    for body in bodies:
        assert _has_long_digit_run(body) == (regex.search(body) is not None), body
