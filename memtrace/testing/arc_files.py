"""The emulator's storage as Arc lays it out: rows in Parquet files per hour partition.

Arc writes each flush of its buffer as Parquet files, one per measurement and hour of the rows'
time, under ``<database>/<measurement>/YYYY/MM/DD/HH/``. Its delete rewrites the files that
hold matching rows, and its retention removes whole files whose newest row is older than a
cutoff (docs/arc.md). The emulator keeps every row in an in-memory DuckDB table
``_arc_<measurement>`` with a hidden ``_file`` column naming its file; queries see the view
``<measurement>`` without that column. With a data directory, every file also exists on disk
(uncompressed, so a test can search the raw bytes), written, rewritten and removed with the
rows.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb

HOUR_US = 3_600_000_000
_seq = itertools.count(1)


def physical(measurement: str) -> str:
    """The table holding a measurement's rows and their ``_file``."""
    return f'"_arc_{measurement}"'


def ensure_table(conn: duckdb.DuckDBPyConnection, measurement: str, types: dict[str, str]) -> None:
    """Create the table (and missing columns) for ``types``; refresh the view over it."""
    table = physical(measurement)
    columns = ", ".join(f'"{c}" {"TIMESTAMP" if c == "time" else t}' for c, t in types.items())
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, _file VARCHAR)")
    existing = {row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
    for column, kind in types.items():
        if column not in existing:
            conn.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')
    conn.execute(
        f'CREATE OR REPLACE VIEW "{measurement}" AS SELECT * EXCLUDE (_file) FROM {table}'  # noqa: S608
    )


def file_name(database: str, measurement: str, time_us: int) -> str:
    """A new file's path relative to the data directory, in the hour partition of ``time_us``."""
    try:
        partition = f"{datetime.fromtimestamp((time_us // HOUR_US) * 3600, UTC):%Y/%m/%d/%H}"
    except (OverflowError, ValueError, OSError):  # a time Python's datetime cannot show
        partition = f"out_of_range/{time_us // HOUR_US}"
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    return f"{database}/{measurement}/{partition}/{measurement}_{stamp}_{next(_seq):08d}.parquet"


def has_table(conn: duckdb.DuckDBPyConnection, measurement: str) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
        [f"_arc_{measurement}"],
    ).fetchone()
    return bool(found and found[0])


def measurements(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '\\_arc\\_%' "
        "ESCAPE '\\'"
    ).fetchall()
    return sorted(str(name)[len("_arc_") :] for (name,) in rows)


def file_stats(
    conn: duckdb.DuckDBPyConnection, measurement: str
) -> list[tuple[str, datetime, int]]:
    """(file, newest time, rows) of every file of the measurement."""
    return [
        (str(name), newest, int(rows))
        for name, newest, rows in conn.execute(
            f"SELECT _file, max(time), count(*) FROM {physical(measurement)} GROUP BY _file"  # noqa: S608
        ).fetchall()
    ]


def write_file(
    conn: duckdb.DuckDBPyConnection, data_dir: Path | None, measurement: str, name: str
) -> None:
    """(Re)write a file from its rows, atomically; remove it when it has none left."""
    if data_dir is None:
        return
    path = data_dir / name
    left = conn.execute(
        f"SELECT count(*) FROM {physical(measurement)} WHERE _file = ?",  # noqa: S608
        [name],
    ).fetchone()
    if not left or not left[0]:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    quoted_name = name.replace("'", "''")
    quoted_path = str(temporary).replace("'", "''")
    conn.execute(
        f"COPY (SELECT * EXCLUDE (_file) FROM {physical(measurement)} "  # noqa: S608
        f"WHERE _file = '{quoted_name}') TO '{quoted_path}' "
        "(FORMAT PARQUET, COMPRESSION UNCOMPRESSED)"
    )
    os.replace(temporary, path)
