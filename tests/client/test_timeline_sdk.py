"""Timelines and decision outcomes through the SDK, sync and async, against the real app."""

from __future__ import annotations

from memtrace import AsyncMemtrace, Memtrace, TimelineOptions
from memtrace.domain.errors import DuplicateMemory, InvalidInput, NotFoundError
from tests.client.conftest import SyncApp


def test_sync_sdk(sync_app: SyncApp) -> None:
    with sync_app.client() as client:
        assert isinstance(client, Memtrace)
        decision = client.decide("planner", "Use the cache", "it halves latency")
        outcome = client.record_outcome(
            decision.id, "success", "latency 40 ms", metrics={"latency_ms": 40}
        )
        assert outcome.parent_id == decision.id and outcome.metadata == {
            "outcome": "success",
            "metrics": {"latency_ms": 40},
        }
        try:
            client.record_outcome(
                decision.id, "success", "latency 40 ms", metrics={"latency_ms": 40}
            )
        except DuplicateMemory as exc:
            assert exc.existing_id == outcome.id
        else:
            raise AssertionError("a second identical outcome is a duplicate")
        timeline = client.timeline(since="2h", bucket="30m", group_by="memory_type")
        assert timeline.total == 2 and timeline.bucket_seconds == 1800
        assert sum(b.groups.get("decision", 0) for b in timeline.buckets) == 1
        same = client.timeline(TimelineOptions(since="2h", bucket="30m", group_by="memory_type"))
        assert same.total == timeline.total
        stats = client.get_agent_stats("planner")
        assert stats.decision_success_rate == 1.0
        for call, error in (
            (lambda: client.timeline(bucket="0h"), InvalidInput),
            (
                lambda: client.record_outcome("mem_01ARZ3NDEKTSV4RRFFQ69G5FAV", "success", "x"),
                NotFoundError,
            ),
        ):
            try:
                call()
            except error:
                pass
            else:
                raise AssertionError(f"{error.__name__} expected")


async def test_async_sdk(aclient: AsyncMemtrace) -> None:
    decision = await aclient.decide("planner", "Retry twice", "the API is flaky")
    outcome = await aclient.record_outcome(decision.id, "failure", "still failing")
    assert outcome.metadata == {"outcome": "failure", "metrics": {}}
    timeline = await aclient.timeline(since="1h", bucket="5m", event_type="outcome")
    assert timeline.total == 1 and len(timeline.buckets) in (12, 13)
    stats = await aclient.get_agent_stats("planner")
    assert (stats.decisions_with_outcome, stats.decision_success_rate) == (1, 0.0)
