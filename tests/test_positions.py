"""Change positions on the wire (memtrace/domain/positions.py) and the SDK's SSE parser."""

from __future__ import annotations

import pytest

from memtrace.client._endpoints import SseParser
from memtrace.domain.errors import InvalidInput
from memtrace.domain.positions import decode_position, encode_position


@pytest.mark.parametrize("position", [0, 1, 42, 10**12, (1 << 62) - 1])
def test_positions_round_trip(position: int) -> None:
    text = encode_position(position)
    assert text.startswith("p1.")
    assert decode_position(text) == position


@pytest.mark.parametrize(
    "text",
    [
        "",
        "p1.",
        "p2.MQ",
        "MQ",
        "p1.!!",
        "p1.LTE",
        "p1.MDE",
        "p1." + "A" * 80,
        encode_position(1) + "=",
    ],
)
def test_malformed_positions_name_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^Last-Event-ID: malformed"):
        decode_position(text, "Last-Event-ID")


def test_sse_parser_yields_memory_events_and_skips_the_rest() -> None:
    parser = SseParser()
    memory = (
        '{"id":"mem_01J0000000000000000000000A","time":"2026-01-01T00:00:00Z","org_id":"o",'
        '"agent_id":"a","memory_type":"episodic","event_type":"general","content":"x",'
        '"dedup_key":"k"}'
    )
    lines = [
        "retry: 1500",
        "id: p1.MA",
        "event: open",
        "data: {}",
        "",
        "id: p1.MQ",
        "event: memory",
        f"data: {memory}",
        "",
        ": ping",
        "",
        "event: other",
        "data: {}",
        "",
    ]
    events = [event for line in lines for event in parser.feed(line)]
    assert [(e.id, e.memory.content) for e in events] == [("p1.MQ", "x")]
    assert parser.retry_s == 1.5
    assert parser.last_id == "p1.MQ"
