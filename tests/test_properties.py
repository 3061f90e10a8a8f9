"""Property-based tests (hypothesis) of the pure parts every request goes through: time
windows, dedup keys, context budgets, tag and id validation, and the rate limiter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from memtrace.auth.ratelimit import RateLimiter
from memtrace.domain.context import CHARS_PER_TOKEN, estimate_tokens, footer, render_context
from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.errors import InvalidInput
from memtrace.domain.ids import new_session_id
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import (
    AGENT_ID_PATTERN,
    EVENT_TYPE_PATTERN,
    MEMORY_TYPES,
    TAG_PATTERN,
    MemoryCreate,
    parse_model,
)
from memtrace.domain.timestamps import to_us
from memtrace.domain.windows import parse_time_bound, parse_window
from memtrace.service import parse_tags

# Bounded and reproducible: no example database, no wall-clock deadline on a busy CI machine.
prop = settings(deadline=None, max_examples=150, database=None, derandomize=True)

NOW = to_us(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
UNIT_US["w"] = 7 * UNIT_US["d"]

agent_ids = st.from_regex(AGENT_ID_PATTERN, fullmatch=True)
event_types = st.from_regex(EVENT_TYPE_PATTERN, fullmatch=True)
tags = st.from_regex(TAG_PATTERN, fullmatch=True)


# --- time windows ----------------------------------------------------------------------------


@prop
@given(st.integers(0, 999_999_999), st.sampled_from(sorted(UNIT_US)))
def test_relative_bounds_count_back_from_now(n: int, unit: str) -> None:
    expected = max(0, NOW - n * UNIT_US[unit])
    assert parse_time_bound(f"{n}{unit}", "since", NOW, allow_now=False) == expected


@prop
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), st.integers(-23 * 60, 23 * 60).map(lambda m: timedelta(minutes=m))),
)
def test_iso_timestamps_round_trip(moment: datetime, offset: timedelta | None) -> None:
    aware = moment if offset is None else moment.replace(tzinfo=timezone(offset))
    assert parse_time_bound(aware.isoformat(), "until", NOW, allow_now=True) == max(0, to_us(aware))


@prop
@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_400_naming_the_field(text: str) -> None:
    try:
        value = parse_time_bound(text, "since", NOW, allow_now=False)
    except InvalidInput as exc:
        assert exc.message.startswith("since:")
    else:
        assert isinstance(value, int) and value >= 0


@prop
@given(st.one_of(st.none(), st.text(max_size=30)), st.one_of(st.none(), st.text(max_size=30)))
def test_windows_are_ordered_or_rejected(since: str | None, until: str | None) -> None:
    try:
        lo, hi = parse_window(since, until, NOW)
    except InvalidInput as exc:
        assert exc.message.split(":")[0] in ("since", "until")
    else:
        assert lo is None or hi is None or lo <= hi


# --- dedup keys ------------------------------------------------------------------------------


@prop
@given(agent_ids, event_types, st.one_of(st.none(), agent_ids), st.text(min_size=1))
def test_dedup_key_shape_and_determinism(
    agent: str, event: str, session: str | None, content: str
) -> None:
    key = derive_dedup_key(agent, event, session, content)
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert key == derive_dedup_key(agent, event, session, content)
    # Only the first 200 UTF-8 bytes of content count.
    longer = content + "tail that is never read" if len(content.encode()) >= 200 else None
    if longer is not None:
        assert derive_dedup_key(agent, event, session, longer) == key


@prop
@given(
    st.tuples(agent_ids, event_types, st.one_of(st.none(), agent_ids)),
    st.tuples(agent_ids, event_types, st.one_of(st.none(), agent_ids)),
    st.text(min_size=1, max_size=50),
)
def test_dedup_keys_of_different_scopes_differ(
    a: tuple[str, str, str | None], b: tuple[str, str, str | None], content: str
) -> None:
    # The separator cannot appear in a valid id, so no two scopes share a key prefix.
    assume(a != b)
    assert derive_dedup_key(*a, content) != derive_dedup_key(*b, content)


# --- context budgets -------------------------------------------------------------------------


@st.composite
def memory_records(draw: st.DrawFn) -> MemoryRecord:
    n = draw(st.integers(0, 10**6))
    return MemoryRecord(
        id=f"mem_{n:026d}",
        time=NOW - n * 1_000_000,
        org_id="org_x",
        agent_id="a",
        session_id="s",
        memory_type=draw(st.sampled_from(MEMORY_TYPES)),
        event_type=draw(st.sampled_from(["step", "error", "tool_call"])),
        content=draw(st.text(min_size=1, max_size=1200)),
        metadata=draw(st.one_of(st.none(), st.fixed_dictionaries({"reasoning": st.text()}))),
        tags=(),
        importance=draw(st.one_of(st.none(), st.floats(0, 1))),
        dedup_key="k",
        parent_id=None,
    )


HEADER = "## Session Context (sess_x)"


@settings(prop, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(memory_records(), max_size=40, unique_by=lambda m: m.id),
    st.integers(1, 4000),
    st.integers(0, 50),
)
def test_context_respects_its_budget(
    memories: list[MemoryRecord], max_tokens: int, unseen: int
) -> None:
    rendered = render_context(HEADER, memories, max_tokens, unseen=unseen)
    total = len(memories) + unseen
    assert rendered.memory_count + rendered.omitted_count == total
    assert rendered.token_estimate == estimate_tokens(rendered.text)
    assert rendered.truncated == (rendered.text != render_context(HEADER, memories, 10**9).text)
    floor = len(HEADER) + len(footer(total)) + 2
    if max_tokens * CHARS_PER_TOKEN >= floor:  # room for the fixed parts: the budget holds
        assert rendered.token_estimate <= max_tokens
    if rendered.omitted_count:
        assert rendered.text.endswith(footer(rendered.omitted_count))
    # Errors and decisions are kept before anything else.
    important = [m for m in memories if m.event_type == "error" or m.memory_type == "decision"]
    if rendered.memory_count > len(important):
        kept_ids = {m.id for m in memories if _line_in(m, rendered.text)}
        assert {m.id for m in important} <= kept_ids


def _line_in(memory: MemoryRecord, text: str) -> bool:
    first_line = memory.content.replace("\r\n", "\n").split("\n")[0][:100]
    return f"] {memory.event_type}: {first_line}" in text


# --- tags and ids ----------------------------------------------------------------------------


@prop
@given(st.lists(tags, max_size=32))
def test_valid_tags_are_accepted_and_deduplicated_in_order(values: list[str]) -> None:
    assume(len(set(values)) <= 32)
    item = parse_model(MemoryCreate, {"agent_id": "a", "content": "x", "tags": values})
    assert item.tags == (list(dict.fromkeys(values)) or None)
    assert parse_tags(",".join(values)) == tuple(dict.fromkeys(values))


@prop
@given(st.lists(tags, max_size=5), st.text(min_size=1, max_size=80), st.integers(0, 5))
def test_an_invalid_tag_is_a_400_naming_its_index(good: list[str], bad: str, position: int) -> None:
    assume(not re.fullmatch(TAG_PATTERN, bad))
    values = list(good)
    index = min(position, len(values))
    values.insert(index, bad)
    with pytest.raises(InvalidInput) as caught:
        parse_model(MemoryCreate, {"agent_id": "a", "content": "x", "tags": values})
    assert caught.value.message.startswith(f"tags[{index}]:")


@prop
@given(st.text(max_size=200))
def test_agent_ids_accepted_exactly_when_they_match_the_pattern(agent: str) -> None:
    valid = re.fullmatch(AGENT_ID_PATTERN, agent) is not None
    try:
        parse_model(MemoryCreate, {"agent_id": agent, "content": "x"})
    except InvalidInput as exc:
        assert not valid and exc.message.startswith("agent_id:")
    else:
        assert valid


@prop
@given(st.text(max_size=100))
def test_session_ids_in_writes_are_validated(session: str) -> None:
    try:
        item = parse_model(MemoryCreate, {"agent_id": "a", "content": "x", "session_id": session})
    except InvalidInput as exc:
        assert exc.message.startswith("session_id:")
    else:
        assert item.session_id is None if session == "" else item.session_id == session


def test_generated_session_ids_are_valid_refs() -> None:
    for _ in range(100):
        assert re.fullmatch(AGENT_ID_PATTERN, new_session_id())


# --- rate limiter ----------------------------------------------------------------------------


@prop
@given(st.floats(0.1, 1000), st.integers(1, 50), st.lists(st.floats(0, 2), max_size=200))
def test_rate_limiter_never_admits_more_than_burst_plus_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = [0.0]
    limiter = RateLimiter(rate, burst, clock=lambda: clock[0])
    admitted = 0
    for gap in gaps:
        clock[0] += gap
        wait = limiter.acquire("k")
        assert wait >= 0
        admitted += wait == 0
    assert admitted <= burst + rate * clock[0] + 1e-6
