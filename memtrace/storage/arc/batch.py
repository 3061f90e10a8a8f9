"""One Arc write of memory rows: the columnar body, and finding the rows Arc refuses.

**Time unit.** Arc guesses the unit of the whole ``time`` column from its *first* value (below
1e10 seconds, below 1e13 milliseconds, below 1e16 microseconds, else nanoseconds; docs/arc.md).
memtrace sends microseconds, and accepts times from 1970-01-01 on, so a memory dated before
1970-04-26T17:46:40Z (1e13 µs) sent first would make Arc read the batch as seconds or
milliseconds: times multiplied by 1000 or 1,000,000. Every batch therefore starts with a row
at or after that instant: one of its own rows when it has one (row order in Arc does not
matter), else one **unit anchor** row (``org_id`` and ``id`` empty, time exactly 1e13 µs)
that no memtrace query can match, since every query filters on a real ``org_id``. Times
below 1e16 µs (year 2286) are read as microseconds, and memtrace refuses writes dated more
than 5 minutes ahead, so nothing else is ever ambiguous.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from memtrace.domain.memory import MEMORY_FIELDS, MemoryRecord
from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRefused
from memtrace.storage.rows import RECORD_COLUMNS, record_to_row

K = TypeVar("K")

UNIT_FLOOR_US = 10**13  # the smallest first value Arc reads as microseconds
# Empty text where a value is required, null elsewhere (so no column's type is decided by it).
_ANCHOR: dict[str, Any] = {
    **{field.name: "" if field.required else None for field in MEMORY_FIELDS},
    "time": UNIT_FLOOR_US,
}


def arc_columns(records: Sequence[MemoryRecord]) -> dict[str, list[Any]]:
    """The fixed column set of one msgpack write: times in µs with a first value Arc reads as
    microseconds (see the module doc), ``importance`` always a float or null."""
    rows = [dict(zip(RECORD_COLUMNS, record_to_row(r), strict=True)) for r in records]
    if rows and rows[0]["time"] < UNIT_FLOOR_US:
        lead = next((i for i, row in enumerate(rows) if row["time"] >= UNIT_FLOOR_US), None)
        if lead is None:
            rows.insert(0, _ANCHOR)
        else:
            rows.insert(0, rows.pop(lead))
    return {name: [row[name] for row in rows] for name in arc_sql.COLUMNS}


async def write_isolating(
    client: ArcClient,
    measurement: str,
    rows: Sequence[tuple[K, MemoryRecord]],
    accepted: Callable[[list[K]], Awaitable[None]],
) -> list[tuple[K, str]]:
    """Write ``rows``; when Arc refuses the payload, split it in halves until the refused
    rows stand alone. Returns them with Arc's reason.

    ``accepted`` is awaited with the keys of every part Arc answered 204 for, as it happens, so
    progress survives an outage in the middle. :class:`ArcUnavailable` and the other
    :class:`ArcRejected` errors (credentials, a wrong URL) propagate: they are not about rows.
    A batch of n rows with one bad row costs about 2·log2(n) extra requests.
    """
    refused: list[tuple[K, str]] = []

    async def attempt(part: Sequence[tuple[K, MemoryRecord]]) -> None:
        try:
            await client.write(measurement, arc_columns([record for _, record in part]))
        except ArcRefused as exc:
            if len(part) == 1:
                refused.append((part[0][0], exc.message))
                return
            middle = len(part) // 2
            await attempt(part[:middle])
            await attempt(part[middle:])
            return
        await accepted([key for key, _ in part])

    if rows:
        await attempt(rows)
    return refused
