"""Export files: NDJSON, one memory per line, exactly as the API returns it (id and time
included). Writing is ``record.to_wire()`` per line; reading validates every line first, so a
file with one bad line imports nothing (docs/api.md, "Export and import")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from memtrace.domain.errors import InvalidInput
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import MemoryImport, parse_model
from memtrace.domain.timestamps import now_us
from memtrace.service import prepare_memory
from memtrace.storage.base import NewMemory

MAX_LINE_BYTES = 1024 * 1024  # a memory is at most 64 KiB of content + 16 KiB of metadata


def to_line(record: MemoryRecord) -> bytes:
    """One memory as an export line (its API JSON and a newline)."""
    return orjson.dumps(record.to_wire()) + b"\n"


def parse_line(raw: bytes, line_no: int, max_content_bytes: int, now: int) -> NewMemory:
    """One export line as a memory to insert with its id (the file's ``org_id`` is ignored:
    the importing org's is used). The rules of a write apply (:func:`prepare_memory`).

    Raises:
        InvalidInput: ``line N: <field>: <problem>``.
    """
    where = f"line {line_no}: "
    if len(raw) > MAX_LINE_BYTES:
        raise InvalidInput(f"{where}longer than {MAX_LINE_BYTES} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{where}not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}expected a JSON object (one memory per line)")
    try:
        item = parse_model(MemoryImport, data)
    except InvalidInput as exc:
        raise InvalidInput(where + exc.message) from None
    return prepare_memory(item, now, where, max_content_bytes, memory_id=item.id)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for line_no, raw in enumerate(stream, start=1):
        if raw.strip():
            yield line_no, raw


def validate_file(path: Path, max_content_bytes: int) -> int:
    """Check every line of an export file (constant memory); the number of memories.

    Raises:
        InvalidInput: the first bad line, by number; nothing has been imported.
    """
    now = now_us()
    count = 0
    with path.open("rb") as stream:
        for line_no, raw in _lines(stream):
            parse_line(raw, line_no, max_content_bytes, now)
            count += 1
    return count


def read_batches(path: Path, size: int, max_content_bytes: int) -> Iterator[list[NewMemory]]:
    """The file's memories in batches of ``size`` (after :func:`validate_file` passed)."""
    now = now_us()
    batch: list[NewMemory] = []
    with path.open("rb") as stream:
        for line_no, raw in _lines(stream):
            batch.append(parse_line(raw, line_no, max_content_bytes, now))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch
