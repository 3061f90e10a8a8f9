"""Timelines on every store (docs/api.md, "Timeline"): counts per time bucket and group.

Every store numbers a memory's bucket the same way, in its own SQL: ``(time - origin) / width``
with ``origin`` the start of the first bucket, a multiple of ``width`` at or before ``since``.
``time >= since >= origin``, so the difference is never negative and integer division is the
floor in SQLite, PostgreSQL and DuckDB alike. The stores return ``(bucket, group, count)``
rows; :class:`BucketCounts` adds them up into :class:`TimelineBucket` values (and adds the
records a store holds outside its SQL, such as Arc's outbox overlay).
"""

from __future__ import annotations

from collections.abc import Iterable

from memtrace.domain.memory import MemoryRecord
from memtrace.storage.base import TimelineBucket, TimelineGroup


def origin_of(since: int, width: int) -> int:
    """The start of the bucket holding ``since``: a multiple of ``width`` since the epoch."""
    return since - since % width


def group_values(record: MemoryRecord, group_by: TimelineGroup) -> Iterable[str]:
    """The groups a memory counts in (by tag: each of its tags, none without tags)."""
    if group_by == "tag":
        return record.tags
    return (str(getattr(record, group_by)),)


class BucketCounts:
    """Counts per bucket index (``(time - origin) // width``), and per group within it."""

    def __init__(self, origin: int, width: int) -> None:
        self.origin = origin
        self.width = width
        self.counts: dict[int, int] = {}
        self.groups: dict[int, dict[str, int]] = {}

    def total(self, index: int, n: int) -> None:
        """``n`` memories in bucket ``index``."""
        self.counts[index] = self.counts.get(index, 0) + int(n)

    def group(self, index: int, group: str, n: int) -> None:
        """``n`` memories of bucket ``index`` carry ``group`` (not added to the total)."""
        groups = self.groups.setdefault(index, {})
        groups[group] = groups.get(group, 0) + int(n)

    def groups_of(self, index: int, groups: dict[str, int]) -> None:
        """Add a bucket's whole ``{group: n}`` at once (not added to the total)."""
        mine = self.groups.get(index)
        if mine is None:
            self.groups[index] = groups
            return
        for name, n in groups.items():
            mine[name] = mine.get(name, 0) + n

    def records(self, records: Iterable[MemoryRecord], group_by: TimelineGroup | None) -> None:
        """Count memories read whole (an overlay of rows the backend's SQL cannot see)."""
        for record in records:
            index = (record.time - self.origin) // self.width
            self.total(index, 1)
            if group_by is not None:
                for value in group_values(record, group_by):
                    self.group(index, value, 1)

    def buckets(self) -> list[TimelineBucket]:
        """The non-empty buckets, ascending; groups sorted by name."""
        return [
            TimelineBucket(
                self.origin + index * self.width,
                self.counts[index],
                dict(sorted(self.groups.get(index, {}).items())),
            )
            for index in sorted(self.counts)
            if self.counts[index] > 0
        ]
