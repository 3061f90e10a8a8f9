"""Context markdown (docs/context.md): golden text, reasoning, budget, footer, empty session."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from memtrace.domain.context import estimate_tokens, render_context
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import SessionContext
from memtrace.domain.timestamps import format_seconds, to_us

GOLDEN = """## Session Context ({sid})

### Recent Actions (2)
- [2026-11-22T03:00:05Z] page_crawled: Crawled https://example.com — found 3 product pages
- [2026-11-22T02:58:11Z] general: Started crawl of example.com

### Decisions Made (1)
- [2026-11-22T02:59:40Z] decision: Skip pagination — reasoning: only 2 pages deep

### Errors (1)
- [2026-11-22T02:59:02Z] error: 429 from pricing API

### Known Entities (1)
- [2026-11-22T02:57:00Z] customer: Acme Corp, plan=enterprise

### Session Notes (1)
- [2026-11-22T02:56:00Z] goal: Map Acme's product catalogue"""

FIXTURE = [
    ("2026-11-22T02:56:00.250Z", "session", "goal", "Map Acme's product catalogue", None),
    ("2026-11-22T02:57:00Z", "entity", "customer", "Acme Corp, plan=enterprise", None),
    ("2026-11-22T02:58:11Z", "episodic", "general", "Started crawl of example.com", None),
    ("2026-11-22T02:59:02Z", "episodic", "error", "429 from pricing API", None),
    ("2026-11-22T02:59:40Z", "decision", "decision", "Skip pagination", "only 2 pages deep"),
    (
        "2026-11-22T03:00:05Z",
        "episodic",
        "page_crawled",
        "Crawled https://example.com — found 3 product pages",
        None,
    ),
]


async def test_golden_session_context(api: httpx.AsyncClient) -> None:
    session = (await api.post("/api/v1/sessions", json={"agent_id": "crawler"})).json()
    sid = session["id"]
    for time, mtype, event, content, reasoning in FIXTURE:
        body = {
            "agent_id": "crawler",
            "session_id": sid,
            "time": time,
            "memory_type": mtype,
            "event_type": event,
            "content": content,
        }
        if reasoning:
            body["metadata"] = {"reasoning": reasoning}
        assert (await api.post("/api/v1/memories", json=body)).status_code == 201
    # a memory of another session must not appear
    await api.post(
        "/api/v1/memories",
        json={"agent_id": "crawler", "content": "elsewhere", "time": "2026-11-22T03:00:00Z"},
    )
    response = await api.post(f"/api/v1/sessions/{sid}/context", json={})
    assert response.status_code == 200
    body = SessionContext.model_validate(response.json())
    assert body.context == GOLDEN.format(sid=sid)
    assert body.session_id == sid and body.memory_count == 6
    assert body.truncated is False and body.omitted_count == 0
    assert body.token_estimate == estimate_tokens(body.context)

    only = await api.post(
        f"/api/v1/sessions/{sid}/context", json={"include_types": ["decision", "entity"]}
    )
    assert only.json()["memory_count"] == 2
    assert "### Recent Actions" not in only.json()["context"]
    window = await api.post(
        f"/api/v1/sessions/{sid}/context",
        json={"since": "2026-11-22T02:59:00Z", "until": "2026-11-22T03:00:00Z"},
    )
    assert window.json()["memory_count"] == 2  # the error and the decision


async def test_empty_session_is_just_the_header(api: httpx.AsyncClient) -> None:
    sid = (await api.post("/api/v1/sessions", json={"agent_id": "a"})).json()["id"]
    body = (await api.post(f"/api/v1/sessions/{sid}/context")).json()
    assert body["context"] == f"## Session Context ({sid})"
    assert body["memory_count"] == 0 and body["truncated"] is False


async def test_context_of_a_session_never_created(api: httpx.AsyncClient) -> None:
    """Answered from the memories carrying its id, as the Go memtrace did (its quickstart calls
    /sessions/sess_abc/context); only an id that cannot be a session id is 404."""
    await api.post(
        "/api/v1/memories", json={"agent_id": "a", "session_id": "sess_abc", "content": "x"}
    )
    response = await api.post("/api/v1/sessions/sess_abc/context", json={})
    assert response.status_code == 200 and response.json()["memory_count"] == 1
    empty = await api.post("/api/v1/sessions/sess_000000000000000000000000/context", json={})
    assert empty.status_code == 200 and empty.json()["memory_count"] == 0
    response = await api.post("/api/v1/sessions/not%20an%20id/context", json={})
    assert response.status_code == 404


async def test_agent_context_spans_sessions_and_defaults_to_24h(api: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    s1 = (await api.post("/api/v1/sessions", json={"agent_id": "worker"})).json()["id"]
    s2 = (await api.post("/api/v1/sessions", json={"agent_id": "worker"})).json()["id"]
    for content, session, hours in (("first run", s1, 3), ("second run", s2, 1), ("old", s1, 30)):
        await api.post(
            "/api/v1/memories",
            json={
                "agent_id": "worker",
                "session_id": session,
                "content": content,
                "time": (now - timedelta(hours=hours)).isoformat(),
            },
        )
    await api.post("/api/v1/memories", json={"agent_id": "other", "content": "not mine"})
    body = (await api.post("/api/v1/agents/worker/context", json={})).json()
    assert body["agent_id"] == "worker"
    assert body["context"].startswith("## Agent Context (worker)\n\n### Recent Actions (2)")
    assert "second run" in body["context"] and "first run" in body["context"]
    assert "old" not in body["context"] and "not mine" not in body["context"]
    wide = (await api.post("/api/v1/agents/worker/context", json={"since": "7d"})).json()
    assert wide["memory_count"] == 3
    missing = await api.post("/api/v1/agents/nobody/context", json={})
    assert missing.status_code == 200 and missing.json()["memory_count"] == 0


# --- the budget, on the pure renderer ----------------------------------------------------------

BASE = to_us(datetime(2026, 11, 22, 3, 0, tzinfo=UTC))


def record(
    n: int,
    *,
    mtype: str = "episodic",
    event: str = "step",
    content: str | None = None,
    importance: float | None = None,
    reasoning: str | None = None,
) -> MemoryRecord:
    return MemoryRecord(
        id=f"mem_{n:026d}",
        time=BASE + n * 1_000_000,
        org_id="org_x",
        agent_id="a",
        session_id="s",
        memory_type=mtype,
        event_type=event,
        content=content or f"memory number {n}",
        metadata={"reasoning": reasoning} if reasoning else None,
        tags=(),
        importance=importance,
        dedup_key="k",
        parent_id=None,
    )


def test_budget_keeps_errors_and_decisions_then_importance_then_newer() -> None:
    memories = [
        record(1, content="old routine " + "a" * 80),
        record(2, content="important routine " + "b" * 80, importance=0.9),
        record(3, event="error", content="the crash " + "c" * 80, importance=0.1),
        record(
            4,
            mtype="decision",
            event="decision",
            content="the choice " + "d" * 80,
            reasoning="because",
        ),
        record(5, content="newest routine " + "e" * 80),
        record(6, content="unimportant " + "f" * 80, importance=0.05),
    ]
    full = render_context("## Session Context (s)", memories, 100_000)
    assert full.truncated is False and full.memory_count == 6

    result = render_context("## Session Context (s)", memories, 175)
    assert result.truncated is True
    assert result.memory_count == 4 and result.omitted_count == 2
    text = result.text
    for kept in ("the crash", "the choice", "important routine", "newest routine"):
        assert kept in text
    assert "old routine" not in text and "unimportant" not in text
    assert text.endswith("_(2 older memories omitted)_")
    assert result.token_estimate <= 175
    assert "### Recent Actions (2)" in text and "— reasoning: because" in text


def test_long_items_are_cut_when_over_budget() -> None:
    memories = [record(1, content="x" * 2000), record(2, content="short")]
    result = render_context("## Session Context (s)", memories, 300)
    line = next(ln for ln in result.text.splitlines() if "xxx" in ln)
    assert line.endswith("x…") and line.count("x") == 500
    assert result.truncated is True and result.omitted_count == 0 and result.memory_count == 2
    untouched = render_context("## Session Context (s)", memories, 100_000)
    assert "x" * 2000 in untouched.text and untouched.truncated is False


def test_tiny_budget_keeps_header_and_footer() -> None:
    result = render_context("## Session Context (s)", [record(1), record(2)], 5)
    assert result.text == "## Session Context (s)\n\n_(2 older memories omitted)_"
    assert result.memory_count == 0 and result.omitted_count == 2


def test_unread_memories_count_as_omitted() -> None:
    result = render_context("## H", [record(1)], 10_000, unseen=41)
    assert result.text.endswith("_(41 older memories omitted)_") and result.truncated


def test_multiline_content_stays_one_item() -> None:
    result = render_context("## H", [record(1, content="line one\nline two")], 1000)
    assert result.text.endswith("step: line one\n  line two")


def _outcome(n: int, decision: MemoryRecord, label: str, content: str) -> MemoryRecord:
    return replace(
        record(n, event="outcome", content=content),
        parent_id=decision.id,
        metadata={"outcome": label, "metrics": {"ms": 40} if label == "success" else {}},
    )


def test_a_decision_shows_its_latest_outcome_on_its_line() -> None:
    decision = record(
        1, mtype="decision", event="decision", content="Use the cache", reasoning="fast"
    )
    first = _outcome(2, decision, "failure", "cold cache, slow")
    latest = _outcome(3, decision, "success", "warm now")
    orphan = replace(_outcome(4, decision, "partial", "half done"), parent_id="mem_elsewhere")
    note = record(5, event="general", content="a note")
    rendered = render_context("## H", [note, orphan, latest, decision, first], 2000)
    assert rendered.text.splitlines() == [
        "## H",
        "",
        "### Recent Actions (2)",
        f"- [{format_seconds(note.time)}] general: a note",
        f"- [{format_seconds(orphan.time)}] outcome: partial (half done)",
        "",
        "### Decisions Made (1)",
        f"- [{format_seconds(decision.time)}] decision: Use the cache — reasoning: fast — "
        "outcome: success (warm now) [ms=40]",
    ]
    assert rendered.memory_count == 5 and not rendered.truncated
    # within a budget too small for everything, a kept decision counts its folded outcomes
    small = render_context("## H", [note, orphan, latest, decision, first], 40)
    assert small.truncated and small.memory_count + small.omitted_count == 5
    if "Use the cache" in small.text:
        assert "outcome: success" in small.text
