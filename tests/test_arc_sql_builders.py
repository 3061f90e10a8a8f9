"""Property tests of every Arc SQL builder against a real DuckDB (Arc's engine): for
adversarial strings (quotes, backslashes, NUL, LIKE wildcards, SQL keywords) each statement
runs and selects exactly the rows Python says it should; nothing is ever injected."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtrace.domain.errors import InvalidInput
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.layouts import ArcLayout
from memtrace.storage.base import MemoryQuery
from tests.storage.test_arc_sql_property import adversarial

prop = settings(
    deadline=None,
    max_examples=60,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
T0 = 1_800_000_000_000_000
COLUMNS = (
    "id VARCHAR, time TIMESTAMP, org_id VARCHAR, agent_id VARCHAR, session_id VARCHAR, "
    "memory_type VARCHAR, event_type VARCHAR, content VARCHAR, metadata VARCHAR, tags VARCHAR, "
    "importance DOUBLE, dedup_key VARCHAR, parent_id VARCHAR"
)
texts = adversarial | st.sampled_from(["org_a", "org_b", "mem_1", "crawler"])


@st.composite
def tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for n in range(draw(st.integers(1, 8))):
        out.append(
            {
                "id": draw(texts) + f"#{n}",  # ids are unique, however adversarial
                "time": T0 + draw(st.integers(0, 10)) * 1_000_000,
                "org_id": draw(st.sampled_from(["org_a", "org_b", "o'r\x00g"])),
                "agent_id": draw(st.sampled_from(["crawler", "x'y", "%_"])),
                "memory_type": draw(st.sampled_from(["episodic", "decision"])),
                "event_type": draw(st.sampled_from(["general", "error"])),
                "dedup_key": draw(texts),
            }
        )
    return out


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB for the module (a connection costs ~40 ms of CPU, more than an example);
    each example replaces the table it reads, so examples stay independent."""
    conn = duckdb.connect(":memory:")
    yield conn
    conn.close()


def load(conn: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """``events`` holds exactly ``rows`` (whatever an earlier example left is replaced)."""
    conn.execute(f"CREATE OR REPLACE TABLE events ({COLUMNS})")
    conn.executemany(
        "INSERT INTO events VALUES (?, make_timestamp(?), ?, ?, NULL, ?, ?, 'c', NULL, '', "
        "NULL, ?, NULL)",
        [[r["id"], r["time"], r["org_id"], r["agent_id"], r["memory_type"], r["event_type"],
          r["dedup_key"]] for r in rows],
    )  # fmt: skip


@prop
@given(st.text(max_size=40))
def test_quote_literal_round_trips_any_text(duck: duckdb.DuckDBPyConnection, value: str) -> None:
    assert duck.execute(f"SELECT {arc_sql.quote_literal(value)}").fetchone() == (value,)


@prop
@given(st.text(max_size=30))
def test_quote_ident_accepts_only_the_measurement_pattern(name: str) -> None:
    if arc_sql.MEASUREMENT_RE.match(name):
        assert arc_sql.quote_ident(name) == f'"{name}"'
    else:
        with pytest.raises(InvalidInput):
            arc_sql.quote_ident(name)


@prop
@given(st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=True, allow_infinity=True)))
def test_number_is_exact_or_refused(duck: duckdb.DuckDBPyConnection, value: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        with pytest.raises(InvalidInput):
            arc_sql.number(value)
        return
    text = arc_sql.number(value)
    (parsed,) = duck.execute(f"SELECT {text}").fetchone() or (None,)
    # DuckDB reads a decimal literal as DECIMAL; compared with a DOUBLE column it is the same
    # double again (repr is the shortest round-trip text).
    assert (float(parsed) if isinstance(value, float) else parsed) == value


@prop
@given(tables(), st.sampled_from(["org_a", "org_b", "o'r\x00g"]), texts)
def test_get_and_ids_present_select_exactly(
    duck: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], org: str, probe: str
) -> None:
    load(duck, rows)
    ids = [r["id"] for r in rows] + [probe]
    for memory_id in ids:
        got = duck.execute(arc_sql.get_sql("events", org, memory_id)).fetchall()
        expected = [r for r in rows if r["org_id"] == org and r["id"] == memory_id]
        assert [g[0] for g in got] == [r["id"] for r in expected]
    present = duck.execute(arc_sql.ids_present_sql("events", org, ids)).fetchall()
    assert {p[0] for p in present} == {r["id"] for r in rows if r["org_id"] == org}


@prop
@given(
    tables(),
    st.sampled_from(["org_a", "org_b", "o'r\x00g"]),
    st.sampled_from(["crawler", "x'y", "%_", "nobody"]),
    st.integers(0, 11),
)
def test_agent_stats_and_dedup_seed_select_exactly(
    duck: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], org: str, agent: str, since_s: int
) -> None:
    load(duck, rows)
    since = T0 + since_s * 1_000_000
    stats = duck.execute(arc_sql.agent_stats_sql("events", org, agent, since)).fetchall()
    mine = [r for r in rows if r["org_id"] == org and r["agent_id"] == agent]
    expected = {}
    for r in mine:
        n, recent, errors = expected.get(r["memory_type"], (0, 0, 0))
        is_recent = r["time"] >= since
        expected[r["memory_type"]] = (
            n + 1,
            recent + is_recent,
            errors + (is_recent and r["event_type"] == "error"),
        )
    assert {row[0]: tuple(row[1:]) for row in stats} == expected
    seeded = duck.execute(arc_sql.dedup_seed_sql("events", org, since)).fetchall()
    assert sorted((k, t, i) for k, t, i in seeded) == sorted(
        (r["dedup_key"], r["time"], r["id"])
        for r in rows
        if r["org_id"] == org and r["time"] >= since
    )


def test_a_read_of_gos_layout_keeps_to_gos_rows(duck: duckdb.DuckDBPyConnection) -> None:
    """A measurement that held only Go's rows when its layout was read gets memtrace's first rows
    before the next read: a statement built for Go's layout must not read them as Go rows (they
    would come back with derived ids, beside their outbox copies: one memory seen twice)."""
    duck.execute(
        f"CREATE OR REPLACE TABLE events ({COLUMNS}, metadata_json VARCHAR, tags_csv VARCHAR)"
    )
    go = "(NULL, make_timestamp(?), 'org_a', 'crawler', '', 'episodic', 'general', 'go row', "
    ours = "('mem_1', make_timestamp(?), 'org_a', 'crawler', '', 'episodic', 'general', 'ours', "
    duck.execute(f"INSERT INTO events VALUES {go}NULL, NULL, 0.0, 'k1', '', '{{}}', 'a')", [T0])
    duck.execute(
        f"INSERT INTO events VALUES {ours}'{{}}', 'a', NULL, 'k2', NULL, NULL, NULL)", [T0]
    )
    layout = ArcLayout(ours=False, go=True)  # as read before memtrace's rows landed
    q = MemoryQuery(org_id="org_a", limit=10)
    contents = [
        row[7]
        for row in duck.execute(
            arc_sql.select_sql("events", q, limit=10, offset=0, layout=layout)
        ).fetchall()
    ]
    assert contents == ["go row"]
    assert duck.execute(arc_sql.count_sql("events", q, layout)).fetchone() == (1,)
    stats = duck.execute(arc_sql.agent_stats_sql("events", "org_a", "crawler", T0, layout))
    assert [row[1] for row in stats.fetchall()] == [1]
    for sql in (
        arc_sql.dedup_seed_sql("events", "org_a", T0, layout),
        arc_sql.dedup_lookup_sql("events", "org_a", ["k1", "k2"], T0 - 1, T0 + 1, layout),
        arc_sql.go_rows_sql("events", "org_a", T0, T0 + 1, layout),
    ):
        assert [row[7] for row in duck.execute(sql).fetchall()] == ["go row"]
    # with both column sets known, each row is read as what it is
    both = ArcLayout(ours=True, go=True)
    rows = duck.execute(arc_sql.select_sql("events", q, limit=10, offset=0, layout=both))
    assert sorted(row[7] for row in rows.fetchall()) == ["go row", "ours"]
