"""since/until select exactly the right memories; every other form is a 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from memtrace.domain.errors import InvalidInput
from memtrace.domain.timestamps import to_us
from memtrace.domain.windows import parse_time_bound, parse_window

NOW = to_us(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
H = 3_600_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30_000_000),
        ("30m", NOW - H // 2),
        ("2h", NOW - 2 * H),
        ("7d", NOW - 7 * 24 * H),
        ("1w", NOW - 7 * 24 * H),
        ("0h", NOW),
        ("2026-11-22T10:00:00Z", NOW - 2 * H),
        ("2026-11-22T10:00:00", NOW - 2 * H),  # no zone = UTC
        ("2026-11-22T12:00:00+02:00", NOW - 2 * H),
        ("2026-11-22", NOW - 12 * H),
        ("2026-11-22T10:00:00.5Z", NOW - 2 * H + 500_000),
        ("999999999w", 0),  # before the epoch is clamped, not an error
    ],
)
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_time_bound(text, "since", NOW, allow_now=False) == expected


@pytest.mark.parametrize(
    "text",
    ["", "2 hours", "2H", "-2h", "1y", "h", "yesterday", "2h ago", "now-1h", "1.5h", "x" * 100],
)
def test_rejected_forms(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^since:"):
        parse_time_bound(text, "since", NOW, allow_now=False)


def test_now_only_for_until() -> None:
    assert parse_window(None, "now", NOW) == (None, NOW)
    with pytest.raises(InvalidInput, match=r"^since:"):
        parse_window("now", None, NOW)
    with pytest.raises(InvalidInput, match=r"^since: must not be after until"):
        parse_window("1h", "2h", NOW)
    assert parse_window(None, None, NOW, default_since="24h") == (NOW - 24 * H, None)


async def test_windows_select_exactly(api: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    offsets = {"m0": 0.5, "m1": 50, "m2": 90, "m3": 150, "m4": 60 * 24 + 30, "m5": 60 * 24 * 8}
    for name, minutes in offsets.items():
        body = {
            "agent_id": "clock",
            "content": name,
            "time": (now - timedelta(minutes=minutes)).isoformat(),
        }
        assert (await api.post("/api/v1/memories", json=body)).status_code == 201

    async def window(**params: str) -> list[str]:
        response = await api.get("/api/v1/memories", params={"agent_id": "clock", **params})
        assert response.status_code == 200, response.text
        return sorted(m["content"] for m in response.json()["memories"])

    assert await window(since="1h") == ["m0", "m1"]
    assert await window(since="2h") == ["m0", "m1", "m2"]
    assert await window(since="24h") == ["m0", "m1", "m2", "m3"]
    assert await window(since="7d") == ["m0", "m1", "m2", "m3", "m4"]
    assert await window(since="3h", until="1h") == ["m2", "m3"]
    assert await window(until="1d") == ["m4", "m5"]
    assert await window(since="30s") == []
    iso_since = (now - timedelta(minutes=100)).strftime("%Y-%m-%dT%H:%M:%S")
    iso_until = (now - timedelta(minutes=40)).isoformat()
    assert await window(since=iso_since, until=iso_until) == ["m1", "m2"]
    assert await window(until="now") == sorted(offsets)
    search = await api.post("/api/v1/search", json={"since": "2h", "until": "1h"})
    assert sorted(m["content"] for m in search.json()["results"]) == ["m2"]
