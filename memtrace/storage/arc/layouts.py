"""Rows of two layouts in one Arc measurement: memtrace's and the Go memtrace's.

An org bound to the Arc database its Go server wrote keeps its history readable in place. Go's
rows have no ``id``, keep metadata as ``metadata_json`` and tags as ``tags_csv``, write ``""`` for
an empty string and ``0.0`` for no importance; memtrace's rows have ``id``, ``metadata`` and
``tags``. Once memtrace writes to such a measurement it holds both column sets, each row filling
its own (docs/migrating-from-go.md). :class:`ArcLayout` says which column sets a measurement has
and gives the SQL expressions that read either kind of row as memtrace's row shape.

A Go row gets a stable id derived from its content: ``mem_`` + the ULID of its millisecond and
the first 80 bits of ``md5`` over the row's time (µs) and text columns. DuckDB computes the same
md5 (``row_key``), so pages are ordered, counted and deduplicated the same way in SQL and in
Python, and a get by id reads only the rows of that id's millisecond. At one instant Go's rows
sort before memtrace's: an md5 (hex) sorts before every ``mem_`` id in SQL, and a derived id
carries the memory's time where memtrace's ids carry their (later) write time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.gocompat import go_json_object
from memtrace.domain.ids import memory_id_from
from memtrace.domain.memory import MemoryRecord
from memtrace.storage.arc.client import ArcClient
from memtrace.storage.rows import row_to_record

# The Go row's text columns hashed into its id, in this order after the time.
_GO_HASHED = (
    "agent_id", "session_id", "memory_type", "event_type", "content",
    "metadata_json", "tags_csv", "dedup_key", "parent_id",
)  # fmt: skip
_SEPARATOR = "\x1f"
_GO_CANON_SQL = (
    "concat_ws(chr(31), CAST(epoch_us(time) AS VARCHAR), "
    + ", ".join(f"coalesce({name}, '')" for name in _GO_HASHED)
    + ")"
)


@dataclass(frozen=True, slots=True)
class ArcLayout:
    """Which column sets a measurement holds: memtrace's (``ours``), Go's (``go``) or both."""

    ours: bool = True
    go: bool = False

    @classmethod
    def of(cls, columns: Iterable[str]) -> ArcLayout:
        """The layout of a measurement with these columns (none yet: memtrace's)."""
        names = set(columns)
        go = "metadata_json" in names
        return cls(ours="id" in names or not go, go=go)

    @property
    def go_only_rows(self) -> str:
        """A ``WHERE`` term keeping a read of Go's layout to Go's rows: once memtrace ships into
        a measurement that held only Go's rows, our rows can land between the layout read and
        the query, and would be read as Go rows with derived ids (a memory seen twice, beside
        its outbox copy). Go always wrote ``metadata_json`` ("{}" when empty); ours never do.
        Empty when the layout has memtrace's columns (then ``id`` tells them apart)."""
        return "metadata_json IS NOT NULL" if self.go and not self.ours else ""

    @property
    def settled(self) -> bool:
        """Both column sets exist: columns are never dropped, so this cannot change."""
        return self.ours and self.go

    def _either(self, ours: str, go: str) -> str:
        if not self.go:
            return ours
        if not self.ours:
            return go
        return f"coalesce({ours}, {go})"

    @property
    def id(self) -> str:
        return "id" if self.ours else "NULL"

    @property
    def metadata(self) -> str:
        return self._either("metadata", "metadata_json")

    @property
    def tags(self) -> str:
        return self._either("tags", "tags_csv")

    @property
    def importance(self) -> str:
        """Go wrote ``0.0`` for "no importance"."""
        value = "TRY_CAST(importance AS DOUBLE)"
        if not self.go:
            return value
        go = f"nullif({value}, 0)"
        return go if not self.ours else f"CASE WHEN id IS NULL THEN {go} ELSE {value} END"

    @property
    def go_digest(self) -> str:
        """The md5 (hex) a Go row's derived id comes from (see :func:`go_row_digest`)."""
        return f"md5({_GO_CANON_SQL})"

    @property
    def row_key(self) -> str:
        """One row's identity: its id, or the md5 a Go row's derived id comes from."""
        return self._either("id", self.go_digest)

    def select_list(self) -> str:
        """The columns of memtrace's row shape (``RECORD_COLUMNS`` order), then ``row_key``
        when Go rows may be present."""
        columns = [
            f"{self.id} AS id", "epoch_us(time) AS time_us", "org_id", "agent_id", "session_id",
            "memory_type", "event_type", "content", f"{self.metadata} AS metadata",
            f"{self.tags} AS tags", f"{self.importance} AS importance", "dedup_key", "parent_id",
        ]  # fmt: skip
        if self.go:
            columns.append(f"{self.row_key} AS row_key")
        return ", ".join(columns)

    @property
    def order_key(self) -> str:
        return "row_key" if self.go else "id"

    def record(self, row: list[Any]) -> MemoryRecord:
        """A row of :meth:`select_list` as a record (a Go row gets its derived id)."""
        if row[0] is not None:
            return row_to_record(row if len(row) == 13 else row[:13])
        return go_record(row)


# How long a measurement's layout is trusted before it is read again (once it holds both column
# sets it cannot change: columns are never dropped).
LAYOUT_TTL_S = 30.0


class LayoutProbe:
    """The current layout of one measurement, read with ``columns_sql`` (``SELECT * … LIMIT 0``)
    and kept for :data:`LAYOUT_TTL_S`. Shared by an org's store (reads) and shipper (seeding
    the dedup index, noting shipped rows)."""

    def __init__(self, client: ArcClient, columns_sql: str) -> None:
        self.client = client
        self.columns_sql = columns_sql
        self._layout: ArcLayout | None = None
        self._at = 0.0
        self._shipped = False

    async def get(self) -> ArcLayout:
        """Raises :class:`~memtrace.storage.arc.client.ArcUnavailable`/``ArcRejected``."""
        layout = self._layout
        fresh = time.monotonic() - self._at < LAYOUT_TTL_S
        # Go's rows only, and ours shipped: our columns appear when Arc flushes them, and
        # until the layout is read again our rows would be taken for Go's.
        waiting = layout is not None and not layout.ours and self._shipped
        if layout is None or waiting or not (layout.settled or fresh):
            layout = ArcLayout.of(await self.client.query_columns(self.columns_sql))
            self._layout, self._at = layout, time.monotonic()
        return layout

    def forget(self) -> None:
        """A read failed: it may come from a stale layout, so read it again next time."""
        self._layout = None

    def shipped(self) -> None:
        """Rows of ours were accepted by Arc (the measurement gets memtrace's columns)."""
        self._shipped = True


def dedup_entries(
    layout: ArcLayout, rows: Iterable[list[Any]], *, derived: bool
) -> list[tuple[str, int, str]]:
    """(dedup_key, time, id) of the rows of a dedup query. Go's rows carry Go's key (client
    keys, or Go's formula without the session); with ``derived``, also the key memtrace derives
    for them, so a Go-era client resending a memory finds the Go row."""
    if not layout.go:
        return [(str(k), int(t), str(i)) for k, t, i in rows]
    entries = []
    for row in rows:
        record = layout.record(row)
        if record.dedup_key:
            entries.append((record.dedup_key, record.time, record.id))
        if derived and row[0] is None:  # a Go row
            ours = derive_dedup_key(
                record.agent_id, record.event_type, record.session_id, record.content
            )
            entries.append((ours, record.time, record.id))
    return entries


def go_row_digest(row: Sequence[Any]) -> str:
    """The md5 (hex) of a Go row, as DuckDB computes ``row_key``."""
    _, time_us, _, agent, session, mtype, etype, content, meta, tags, _, dedup, parent = row[:13]
    values = (agent, session, mtype, etype, content, meta, tags, dedup, parent)
    canon = _SEPARATOR.join([str(int(time_us)), *("" if v is None else str(v) for v in values)])
    return hashlib.md5(canon.encode(), usedforsecurity=False).hexdigest()


def go_memory_id(time_us: int, digest: str) -> str:
    return memory_id_from(int(time_us) // 1000, int(digest[:20], 16))


def go_record(row: Sequence[Any]) -> MemoryRecord:
    """A Go row: ``""`` means absent, ``{}`` no metadata, ``0.0`` no importance."""
    time_us = int(row[1])
    importance = row[10]
    return MemoryRecord(
        id=go_memory_id(time_us, go_row_digest(row)),
        time=time_us,
        org_id=row[2],
        agent_id=row[3] or "",
        session_id=row[4] or None,
        memory_type=row[5] or "episodic",
        event_type=row[6] or "general",
        content=row[7] or "",
        metadata=go_json_object(row[8]),
        tags=tuple(row[9].split(",")) if row[9] else (),
        importance=float(importance) if importance else None,
        dedup_key=row[11] or "",
        parent_id=row[12] or None,
    )
