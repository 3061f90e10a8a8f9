"""An Arc emulator on DuckDB + msgpack, faithful to Arc's behaviour (for tests and dev).

The behaviour is described in docs/arc.md, "Arc's wire protocol".

Per database (``x-arc-database``) one in-memory DuckDB; per measurement one table, created by
the first write with column types from each column's first non-null value. Writes land in a
buffer that becomes queryable on flush: immediately (``flush_delay_s = 0``), after the delay,
or on ``POST /api/v1/write/line-protocol/flush``. ``fault`` makes every API call answer 500 or
503, or (``"hang"``) never answer while it is set; ``lose_buffer()`` is a crash before the
flush (204-answered rows are gone); ``refuse_content`` makes Arc refuse (400) writes holding a
row with that text; stopping the server refuses connections. The same switches over HTTP:
``POST /_emulator/control``. Run it: ``python -m memtrace.testing.arc_server``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import msgpack
import orjson

from memtrace.testing import arc_files
from memtrace.testing.arc_admin import ArcAdmin
from memtrace.testing.asgi import JSONResponse, Request, Response, Router

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_SQL = 10_000
_FORBIDDEN = re.compile(
    r"\b(DROP|DELETE\s+FROM|TRUNCATE|ALTER|CREATE|INSERT|UPDATE\b.*\bSET|ATTACH|DETACH|COPY|"
    r"PRAGMA|SET|RESET|LOAD|INSTALL|CALL|read_parquet|read_csv|read_csv_auto|read_json|"
    r"read_json_auto|glob|parquet_scan)\b",
    re.IGNORECASE | re.DOTALL,
)
_QUALIFIED_TABLE = re.compile(r"\b(FROM|JOIN)\s+\"?[A-Za-z_]\w*\"?\s*\.\s*\"?[A-Za-z_]", re.I)
_INSERT_INTO = re.compile(r'\s*INSERT\s+INTO\s+"?([A-Za-z][A-Za-z0-9_]*)"?\s+(.*)$', re.I | re.S)
_STRIP_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_MIN_TS, _MAX_TS = -(2**63) + 1, 2**63 - 1  # DuckDB's TIMESTAMP range in µs (exclusive)
TEST_TOKEN = "arc-test-token"  # noqa: S105 (a fixture's well-known token, not a secret)
Fault = Literal["500", "503", "hang"] | None
HANG_POLL_S = 0.02


def _duck_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return "VARCHAR"


def _to_us(first: int) -> int:
    """Multiplier to microseconds, guessed from the first time value's magnitude (docs/arc.md).
    Arc compares the signed value, so a negative first value reads as seconds."""
    if first < 10**10:
        return 1_000_000
    if first < 10**13:
        return 1000
    if first < 10**16:
        return 1
    return -1000  # nanoseconds: divide


def _int64(value: int) -> int:
    """Arc converts with Go int64 arithmetic: an overflowing product wraps around silently."""
    return (value + 2**63) % 2**64 - 2**63


def _truncated(value: int, divisor: int) -> int:
    """Go's integer division (toward zero)."""
    quotient = abs(value) // divisor
    return quotient if value >= 0 else -quotient


def _rfc3339(value: datetime) -> str:
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += ("." + f"{value.microsecond:06d}").rstrip("0")
    return text + "Z"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _rfc3339(value if value.tzinfo is None else value.astimezone(UTC))
    if isinstance(value, Decimal):
        return float(value)
    return value


@dataclass
class _Buffer:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # measurement → rows
    first_write: float | None = None


class ArcEmulator:
    """State and behaviour of the emulated Arc server (thread-safe)."""

    def __init__(
        self,
        token: str | None = TEST_TOKEN,
        flush_delay_s: float = 0.0,
        *,
        data_dir: Path | None = None,
    ) -> None:
        self.token = token
        self.flush_delay_s = flush_delay_s
        # with a data directory, the Parquet files Arc would write are kept there too
        self.data_dir = data_dir
        # Arc's delete API is off unless delete.enabled = true; retention CRUD is on.
        self.delete_enabled = False
        self.retention_enabled = True
        self.delete_confirmation_threshold = 10_000
        self.delete_max_rows = 1_000_000
        self.fault: Fault = None
        self.fail_writes_after: int | None = None  # answer 503 to writes once this many succeeded
        self.refuse_content: str | None = None  # answer 400 to writes with a content holding it
        self.lost = 0  # rows dropped by lose_buffer()
        self.writes = 0
        self._dbs: dict[str, duckdb.DuckDBPyConnection] = {}
        self._types: dict[tuple[str, str], dict[str, str]] = {}
        self._buffers: dict[str, _Buffer] = {}
        self._lock = threading.RLock()
        self.admin = ArcAdmin(self)
        self.app = Router(
            {
                ("GET", "/health"): self._health,
                ("GET", "/ready"): self._health,
                ("POST", "/api/v1/write/msgpack"): self._write,
                ("POST", "/api/v1/write/line-protocol/flush"): self._flush,
                ("POST", "/api/v1/query"): self._query,
                ("POST", "/_emulator/control"): self._control,
                **self.admin.routes(),
            }
        )

    # -- control (tests) ----------------------------------------------------------------------

    def flush(self) -> int:
        """Make every buffered row queryable now; returns how many rows were flushed."""
        with self._lock:
            return sum(self._flush_db(db) for db in list(self._buffers))

    def lose_buffer(self) -> int:
        """Crash before the flush: rows Arc would already have flushed (their buffer's age
        reached ``flush_delay_s``) become queryable, every other buffered row is gone although
        its write was answered 204. Returns how many rows were lost."""
        self.flush_due()
        with self._lock:
            lost = self.buffered()
            self._buffers.clear()
            self.lost += lost
            return lost

    def buffered(self) -> int:
        with self._lock:
            return sum(len(r) for b in self._buffers.values() for r in b.rows.values())

    def sql(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Run SQL directly on a database (flushed rows only); for test assertions. An
        ``INSERT INTO <measurement> <query>`` adds the rows as one new file (as a resent
        batch would arrive)."""
        with self._lock:
            conn = self._dbs.get(database)
            if conn is None:
                return []
            insert = _INSERT_INTO.match(sql)
            try:
                if insert and arc_files.has_table(conn, insert.group(1)):
                    measurement = insert.group(1)
                    file = arc_files.file_name(database, measurement, 0)
                    conn.execute(
                        f"INSERT INTO {arc_files.physical(measurement)} "  # noqa: S608
                        f"SELECT *, ? AS _file FROM ({insert.group(2)})",
                        [file],
                    )
                    arc_files.write_file(conn, self.data_dir, measurement, file)
                    return []
                return conn.execute(sql).fetchall()
            except duckdb.CatalogException:
                return []

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def database(self, name: str) -> duckdb.DuckDBPyConnection | None:
        """The database's connection, if anything was ever flushed to it (hold :attr:`lock`)."""
        return self._dbs.get(name)

    # -- internals ----------------------------------------------------------------------------

    def _db(self, name: str) -> duckdb.DuckDBPyConnection:
        conn = self._dbs.get(name)
        if conn is None:
            conn = self._dbs[name] = duckdb.connect(":memory:")
        return conn

    def flush_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, buffer in list(self._buffers.items()):
                started = buffer.first_write
                if started is not None and now - started >= self.flush_delay_s:
                    self._flush_db(name)

    def _flush_db(self, name: str) -> int:
        """Write the database's buffer as files: one per measurement and hour partition."""
        buffer = self._buffers.pop(name, None)
        if buffer is None:
            return 0
        conn = self._db(name)
        flushed = 0
        for measurement, rows in buffer.rows.items():
            types = self._types[(name, measurement)]
            columns = list(types)
            arc_files.ensure_table(conn, measurement, types)
            files: dict[int, str] = {}
            for row in rows:
                hour = row["time"] // arc_files.HOUR_US
                if hour not in files:
                    files[hour] = arc_files.file_name(name, measurement, row["time"])
            values = [[row.get(c) for row in rows] for c in columns]
            values.append([files[row["time"] // arc_files.HOUR_US] for row in rows])
            select = ", ".join(
                "make_timestamp(UNNEST(?))" if c == "time" else f"UNNEST(?::{types[c]}[])"
                for c in columns
            )
            quoted = ", ".join(f'"{c}"' for c in columns)
            conn.execute(
                f"INSERT INTO {arc_files.physical(measurement)} ({quoted}, _file) "
                f"SELECT {select}, UNNEST(?::VARCHAR[])",
                values,
            )
            for file in files.values():
                arc_files.write_file(conn, self.data_dir, measurement, file)
            flushed += len(rows)
        return flushed

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("authorization", "")
        return bearer == f"Bearer {self.token}" or request.headers.get("x-api-key") == self.token

    async def _stall(self) -> None:
        """The "hang" fault: no answer for as long as it is set (an Arc that stopped
        responding without closing connections)."""
        while self.fault == "hang":  # noqa: ASYNC110 (set from another thread)
            await asyncio.sleep(HANG_POLL_S)

    async def guard(self, request: Request) -> Response | None:
        await self._stall()
        if self.fault is not None:
            return JSONResponse({"success": False, "error": "emulated fault"}, int(self.fault))
        if not self._authorized(request):
            return JSONResponse({"success": False, "error": "invalid token"}, 401)
        return None

    def _database(self, request: Request) -> str | None:
        name = request.headers.get("x-arc-database", "default")
        return name if NAME_RE.match(name) else None

    # -- endpoints ----------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        await self._stall()
        if self.fault is not None:
            return JSONResponse({"status": "error"}, int(self.fault))
        return JSONResponse({"status": "ok"})

    async def _control(self, request: Request) -> Response:
        """Test switches over HTTP, for an emulator in another process: a JSON object with any
        of ``fault`` ("500", "503", "hang" or null), ``flush_delay_ms``, ``refuse_content`` (text or
        null) and ``lose_buffer`` (true: crash before the flush now). Needs the token."""
        if self.token is not None and not self._authorized(request):
            return JSONResponse({"success": False, "error": "invalid token"}, 401)
        try:
            body = orjson.loads(await request.body())
            if not isinstance(body, dict):
                raise TypeError
        except Exception:
            return JSONResponse({"success": False, "error": "expected a JSON object"}, 400)
        fault, delay, refuse = (
            body.get("fault"),
            body.get("flush_delay_ms", 0),
            body.get("refuse_content"),
        )
        if fault not in (None, "500", "503", "hang") or not isinstance(refuse, str | None):
            return JSONResponse({"success": False, "error": "fault or refuse_content"}, 400)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            return JSONResponse({"success": False, "error": "flush_delay_ms"}, 400)
        lost = 0
        with self._lock:
            if "fault" in body:
                self.fault = fault
            if "flush_delay_ms" in body:
                self.flush_delay_s = delay / 1000
            if "refuse_content" in body:
                self.refuse_content = refuse
            if body.get("lose_buffer"):
                lost = self.lose_buffer()
        return JSONResponse(
            {
                "fault": self.fault,
                "flush_delay_ms": self.flush_delay_s * 1000,
                "refuse_content": self.refuse_content,
                "buffered": self.buffered(),
                "lost": lost,
            }
        )

    async def _flush(self, request: Request) -> Response:
        if (denied := await self.guard(request)) is not None:
            return denied
        return JSONResponse({"flushed": self.flush()})

    async def _write(self, request: Request) -> Response:
        if (denied := await self.guard(request)) is not None:
            return denied
        if self.fail_writes_after is not None and self.writes >= self.fail_writes_after:
            return JSONResponse({"success": False, "error": "emulated write fault"}, 503)
        database = self._database(request)
        if database is None:
            return JSONResponse({"success": False, "error": "invalid database name"}, 400)
        try:
            payload = msgpack.unpackb(await request.body(), raw=False)
        except Exception:
            return JSONResponse({"success": False, "error": "invalid msgpack"}, 400)
        if not isinstance(payload, dict) or not isinstance(payload.get("columns"), dict):
            return JSONResponse({"success": False, "error": "expected a columnar map"}, 400)
        measurement = payload.get("m")
        columns: dict[str, list[Any]] = payload["columns"]
        if not isinstance(measurement, str) or not NAME_RE.match(measurement):
            return JSONResponse({"success": False, "error": "invalid measurement"}, 400)
        if "time" not in columns or not all(isinstance(v, list) for v in columns.values()):
            return JSONResponse({"success": False, "error": "time column required"}, 400)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1 or not all(NAME_RE.match(c) for c in columns):
            return JSONResponse({"success": False, "error": "ragged or bad columns"}, 400)
        times = columns["time"]
        if not times:
            return Response(status_code=204)
        if any(not isinstance(t, int) for t in times):
            return JSONResponse({"success": False, "error": "time must be integers"}, 400)
        factor = _to_us(times[0])
        micros = [_int64(t * factor) if factor > 0 else _truncated(t, -factor) for t in times]
        if any(not _MIN_TS < at < _MAX_TS for at in micros):
            # DuckDB cannot hold the wrapped value: refuse rather than fail at flush time.
            return JSONResponse({"success": False, "error": "timestamp out of range"}, 400)
        if self.refuse_content is not None and any(
            isinstance(v, str) and self.refuse_content in v for v in columns.get("content", ())
        ):
            return JSONResponse({"success": False, "error": "emulated refusal of a row"}, 400)
        with self._lock:
            types = self._types.setdefault((database, measurement), {"time": "TIMESTAMP"})
            for name, values in columns.items():
                if name not in types:
                    first = next((v for v in values if v is not None), "")
                    types[name] = _duck_type(first)
            rows = []
            for i, at in enumerate(micros):
                row: dict[str, Any] = {"time": at}
                for name, values in columns.items():
                    if name == "time":
                        continue
                    value = values[i]
                    kind = types[name]
                    if value is not None and kind == "BIGINT" and isinstance(value, float):
                        value = int(value)  # Arc silently truncates floats in int columns
                    elif value is not None and kind == "VARCHAR" and not isinstance(value, str):
                        value = str(value)
                    row[name] = value
                rows.append(row)
            buffer = self._buffers.setdefault(database, _Buffer())
            buffer.rows.setdefault(measurement, []).extend(rows)
            if buffer.first_write is None:
                buffer.first_write = time.monotonic()
            self.writes += 1
            if self.flush_delay_s <= 0:
                self._flush_db(database)
        return Response(status_code=204)

    async def _query(self, request: Request) -> Response:
        if (denied := await self.guard(request)) is not None:
            return denied
        database = self._database(request)
        if database is None:
            return JSONResponse({"success": False, "error": "invalid database name"}, 400)
        try:
            sql = orjson.loads(await request.body())["sql"]
            if not isinstance(sql, str):
                raise TypeError
        except Exception:
            return JSONResponse({"success": False, "error": 'body must be {"sql": "..."}'}, 400)
        problem = _check_sql(sql)
        if problem:
            return JSONResponse({"success": False, "error": problem}, 400)
        self.flush_due()
        started = time.perf_counter()
        with self._lock:
            conn = self._db(database)
            try:
                cursor = conn.execute(sql)
                names = [d[0] for d in cursor.description or []]
                rows = cursor.fetchall()
            except duckdb.CatalogException as exc:
                if "does not exist" in str(exc) and "Table" in str(exc):
                    names, rows = [], []
                else:
                    return _error(str(exc))
            except duckdb.Error as exc:
                return _error(str(exc))
        body = {
            "success": True,
            "columns": names,
            "data": [[_json_value(v) for v in row] for row in rows],
            "row_count": len(rows),
            "execution_time_ms": round((time.perf_counter() - started) * 1000, 3),
            "timestamp": _rfc3339(datetime.now(UTC)),
        }
        return Response(orjson.dumps(body), media_type="application/json")


def _error(message: str) -> Response:
    return JSONResponse({"success": False, "error": message}, 500)


def _check_sql(sql: str) -> str | None:
    """Arc's statement rules: size, one statement, no DDL/DML/file access, bare table names."""
    if len(sql) > MAX_SQL:
        return f"query too long (max {MAX_SQL} characters)"
    bare = _STRIP_QUOTED.sub("''", sql)
    if ";" in bare.rstrip().rstrip(";"):
        return "only one statement is allowed"
    found = _FORBIDDEN.search(bare)
    if found:
        return f"forbidden statement or function: {found.group(1).split()[0].upper()}"
    if _QUALIFIED_TABLE.search(bare):
        return "use a bare table name with the x-arc-database header"
    return None
