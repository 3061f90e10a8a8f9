"""The timeline's pure parts (memtrace/domain/timeline.py): bucket widths, the bucket cap, the
zero-filled response, the cap on named groups and the table a model reads."""

from __future__ import annotations

import pytest

from memtrace.domain.errors import InvalidInput
from memtrace.domain.timeline import (
    MAX_BUCKETS,
    MAX_GROUPS,
    OTHER_GROUP,
    check_bucket_count,
    parse_bucket,
    timeline_text,
    timeline_wire,
)

S = 1_000_000
H = 3600 * S


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("6h", 21600), ("1d", 86400),
     ("30s", 30), ("2w", 1_209_600)],
)  # fmt: skip
def test_bucket_widths(text: str, seconds: int) -> None:
    assert parse_bucket(text) == seconds * S


@pytest.mark.parametrize(
    "text", ["", "0h", "1", "h", "1y", "1.5h", "-1h", "1 h", "\u0661h", "9999999h"]
)
def test_bad_bucket_widths_name_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^bucket: "):
        parse_bucket(text)


def test_the_bucket_cap_counts_the_partial_first_bucket() -> None:
    since = 10 * H + 30 * 60 * S  # 10:30
    assert check_bucket_count(since, since, H, "1h") == 0
    assert check_bucket_count(since, 11 * H, H, "1h") == 1
    assert check_bucket_count(since, 11 * H + 1, H, "1h") == 2
    assert check_bucket_count(0, MAX_BUCKETS * H, H, "1h") == MAX_BUCKETS
    with pytest.raises(InvalidInput, match=r"^bucket: 1h buckets over this window would be"):
        check_bucket_count(0, MAX_BUCKETS * H + 1, H, "1h")


def test_every_bucket_is_listed_aligned_and_ascending() -> None:
    since, until = 10 * H + 5 * S, 14 * H  # 10:00:05 to 14:00
    data = timeline_wire(since, until, "1h", H, "event_type", {11 * H: (3, {"error": 3})})
    assert [b["start"][11:19] for b in data["buckets"]] == [
        "10:00:00",
        "11:00:00",
        "12:00:00",
        "13:00:00",
    ]
    assert [b["count"] for b in data["buckets"]] == [0, 3, 0, 0]
    assert data["buckets"][1]["groups"] == {"error": 3} and data["buckets"][0]["groups"] == {}
    assert (data["total"], data["bucket_seconds"], data["group_by"]) == (3, 3600, "event_type")
    assert data["since"].endswith("10:00:05.000000Z") and data["until"].endswith("14:00:00.000000Z")


def test_groups_past_the_cap_add_up_under_other() -> None:
    many = {f"agent_{i:03d}": i + 1 for i in range(MAX_GROUPS + 20)}
    data = timeline_wire(0, H, "1h", H, "agent_id", {0: (sum(many.values()), many)})
    groups = data["buckets"][0]["groups"]
    assert len(groups) == MAX_GROUPS + 1 and OTHER_GROUP in groups
    assert sum(groups.values()) == sum(many.values())
    assert "agent_000" not in groups and "agent_119" in groups  # the least frequent go


def test_the_table_for_a_model() -> None:
    found = {h * H: (h, {"error": h}) for h in range(1, 5)}
    data = timeline_wire(0, 5 * H, "1h", H, "event_type", found)
    lines = timeline_text(data).splitlines()
    assert lines[0].endswith("1h buckets by event_type: 10 memories.")
    assert lines[2] == "| bucket start (UTC) | count | error |"
    assert lines[-1] == "| 1970-01-01 04:00 | **4** | 4 |"  # the busiest bucket in bold
    assert len(lines) == 4 + 5  # every bucket, empty ones too, when there are few
    sparse = timeline_wire(0, 1000 * H, "1h", H, None, {7 * H: (2, {})})
    text = timeline_text(sparse)
    assert "| 1970-01-01 07:00 | **2** |" in text and text.endswith("(empty buckets not shown)")
    assert timeline_text(timeline_wire(0, H, "1h", H, None, {})).endswith(": 0 memories.")
