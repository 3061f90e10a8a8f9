"""``content_contains`` on SQLite: the exact check, with as little Python per row as possible.

The rule is Python's: ``needle.lower() in content.lower()``. A Python function called by SQLite
for every row holds the GIL for the whole row, so a scan of 64 KiB memories slowed every other
request of the process, whichever org sent it. SQLite's own ``lower()`` folds ASCII letters
only, and only two characters outside ASCII lower to ASCII in Python: U+0130 (to ``i`` and a
combining dot) and U+212A, the Kelvin sign (to ``k``). So:

* an ASCII needle is found by ``instr(lower(content), needle)`` in SQLite alone (no GIL);
  only a row holding one of those two characters is also checked in Python;
* a needle with other characters is checked in Python only on rows that contain some
  character lowering to its first non-ASCII character (``Ä`` or ``ä`` for ``ä``): a superset
  SQLite finds without Python.

Rows are matched exactly as before; what changed is who pays for the rows that cannot match.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from typing import Any

_ASCII_FROM_ELSEWHERE = ("\u0130", "\u212a")  # the only non-ASCII chars lowering to ASCII


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def prepare(conn: sqlite3.Connection) -> None:
    """Register ``mt_lower`` (Python's ``str.lower``) on a reader connection."""
    conn.create_function("mt_lower", 1, _lower, deterministic=True)


@functools.cache
def _sqlite_lower_is_ascii() -> bool:
    """SQLite built with ICU lowers all of Unicode (then only the Python check is exact)."""
    with sqlite3.connect(":memory:") as conn:
        return bool(conn.execute("SELECT lower('\u00c4') = '\u00c4'").fetchone()[0])


@functools.cache
def _lowering_to() -> dict[str, tuple[str, ...]]:
    """Every character whose ``lower()`` contains a given character (built once, ~0.3 s)."""
    found: dict[str, set[str]] = {}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        lowered = char.lower()
        if lowered != char:
            for part in lowered:
                found.setdefault(part, {part}).add(char)
    return {part: tuple(sorted(chars)) for part, chars in found.items()}


def contains_clause(needle: str, column: str = "m.content") -> tuple[str, list[Any]]:
    """SQL true for rows whose ``column`` contains ``needle`` (already lower-cased)."""
    python_check = f"instr(mt_lower({column}), ?) > 0"
    if not _sqlite_lower_is_ascii():
        return python_check, [needle]
    if needle.isascii():
        rare = " OR ".join(f"instr({column}, ?) > 0" for _ in _ASCII_FROM_ELSEWHERE)
        sql = f"(instr(lower({column}), ?) > 0 OR (({rare}) AND {python_check}))"
        return sql, [needle, *_ASCII_FROM_ELSEWHERE, needle]
    first = next(char for char in needle if not char.isascii())
    sources = _lowering_to().get(first, (first,))
    prefilter = " OR ".join(f"instr({column}, ?) > 0" for _ in sources)
    return f"({prefilter}) AND {python_check}", [*sources, needle]
