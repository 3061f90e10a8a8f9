"""Arc's delete and retention APIs, as the emulator serves them (docs/arc.md).

- ``POST /api/v1/delete`` ``{"database", "measurement", "where", "dry_run", "confirm"}``
  (admin): off unless ``delete_enabled`` (403 naming ``delete.enabled``); the ``where`` is
  checked as Arc checks it (required; no ``;``, ``--``, ``/*``; none of DROP DELETE INSERT
  UPDATE EXEC EXECUTE UNION SELECT CREATE ALTER COPY ATTACH DETACH LOAD INSTALL PRAGMA CALL
  SET as a word, quoted or not; no ``xp_``/``sp_``; balanced quotes and parentheses; ``1=1``,
  ``TRUE`` or ``1`` need ``confirm``); a real delete needs ``confirm``; more rows than
  ``delete_max_rows`` is a 400. Only flushed rows are seen (the write buffer is not). Each
  file holding matching rows is rewritten without them, or removed when none is left.
  Answer: ``success, deleted_count, affected_files, rewritten_files, execution_time_ms,
  dry_run, files_processed``. ``GET /api/v1/delete/config`` reports the settings.
- ``/api/v1/retention``: policies ``{name, database, measurement?, retention_days,
  buffer_days, is_active}`` (list and get with any token; create, update, delete and execute
  with an admin one). Executing one (``{"dry_run", "confirm"}``; a real run needs
  ``confirm``, an inactive policy is a 400) removes every file of the database (or of its
  measurement) whose newest row is older than ``now - (retention_days + buffer_days)`` days.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import orjson

from memtrace.testing import arc_files
from memtrace.testing.asgi import Handler, JSONResponse, Request, Response

if TYPE_CHECKING:
    from memtrace.testing.arc_emulator import ArcEmulator

_PUNCTUATION = (";", "--", "/*")
_KEYWORDS = re.compile(
    r"(?i)\b(DROP|DELETE|INSERT|UPDATE|EXEC|EXECUTE|UNION|SELECT|CREATE|ALTER|COPY|ATTACH|"
    r"DETACH|LOAD|INSTALL|PRAGMA|CALL|SET)\b"
)
_PREFIXES = ("XP_", "SP_")
_FULL_TABLE = ("1=1", "TRUE", "1")


def _fail(message: str, status: int = 400) -> Response:
    return JSONResponse({"success": False, "error": message}, status)


def check_where(where: str) -> tuple[bool, str | None]:
    """(is a full-table delete, problem) as Arc validates a delete's ``where``."""
    if not where.strip():
        return False, (
            "WHERE clause is required. To delete all data, use WHERE clause '1=1' with confirm=true"
        )
    upper = where.strip().upper()
    if upper.startswith("WHERE "):
        upper = upper[6:].strip()
    for pattern in _PUNCTUATION:
        if pattern in upper:
            return False, f"WHERE clause contains forbidden pattern: {pattern}"
    if found := _KEYWORDS.search(where):
        return False, f"WHERE clause contains forbidden keyword: {found.group(1).upper()}"
    for prefix in _PREFIXES:
        if prefix in upper:
            return False, f"WHERE clause contains forbidden pattern: {prefix.lower()}"
    if where.count("'") % 2:
        return False, "WHERE clause has unmatched quotes"
    if where.count("(") != where.count(")"):
        return False, "WHERE clause has unmatched parentheses"
    return upper in _FULL_TABLE, None


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


class ArcAdmin:
    """The delete and retention endpoints over an :class:`ArcEmulator`'s state."""

    def __init__(self, emulator: ArcEmulator) -> None:
        self.emulator = emulator
        self.policies: dict[int, dict[str, Any]] = {}
        self.executions: list[dict[str, Any]] = []
        self._next_id = 1

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/api/v1/delete"): self._delete,
            ("GET", "/api/v1/delete/config"): self._delete_config,
            ("GET", "/api/v1/retention"): self._list,
            ("POST", "/api/v1/retention"): self._create,
            ("GET", "/api/v1/retention/{id}"): self._get,
            ("PUT", "/api/v1/retention/{id}"): self._update,
            ("DELETE", "/api/v1/retention/{id}"): self._remove,
            ("POST", "/api/v1/retention/{id}/execute"): self._execute,
            ("GET", "/api/v1/retention/{id}/executions"): self._executions,
        }

    # -- delete -------------------------------------------------------------------------------

    async def _delete_config(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        e = self.emulator
        return JSONResponse(
            {
                "enabled": e.delete_enabled,
                "confirmation_threshold": e.delete_confirmation_threshold,
                "max_rows_per_delete": e.delete_max_rows,
                "implementation": "rewrite-based",
            }
        )

    async def _delete(self, request: Request) -> Response:
        started = time.perf_counter()
        e = self.emulator
        if (denied := await e.guard(request)) is not None:
            return denied
        if not e.delete_enabled:
            return _fail(
                "Delete operations are disabled. Set delete.enabled=true in arc.toml to enable.",
                403,
            )
        body = await _body(request)
        if body is None:
            return _fail("Invalid request body")
        database, measurement = str(body.get("database") or ""), str(body.get("measurement") or "")
        where, dry_run, confirm = (
            str(body.get("where") or ""),
            bool(body.get("dry_run")),
            bool(body.get("confirm")),
        )
        if not database:
            return _fail("database is required")
        if not measurement:
            return _fail("measurement is required")
        if not arc_files_name_ok(database) or not arc_files_name_ok(measurement):
            return _fail("database or measurement name contains invalid characters")
        full_table, problem = check_where(where)
        if problem:
            return _fail(problem)
        if full_table and not confirm:
            return _fail("Full table delete detected (WHERE 1=1). Set confirm=true to proceed.")
        if not dry_run and not confirm:
            return _fail(
                "Confirmation required for delete operation. Set confirm=true or use "
                "dry_run=true to preview."
            )
        e.flush_due()
        with e.lock:
            conn = e.database(database)
            if conn is None or not arc_files.has_table(conn, measurement):
                affected: list[tuple[str, int]] = []
            else:
                try:
                    affected = [
                        (str(name), int(n))
                        for name, n in conn.execute(
                            f"SELECT _file, count(*) FROM {arc_files.physical(measurement)} "  # noqa: S608
                            f"WHERE {where} GROUP BY _file ORDER BY _file"
                        ).fetchall()
                    ]
                except duckdb.Error as exc:
                    return _fail(f"Failed to find affected files: {exc}", 500)
            total = sum(n for _, n in affected)
            if total > e.delete_max_rows:
                return _fail(
                    f"Delete would affect {total} rows, exceeding maximum of {e.delete_max_rows}."
                )
            if total > e.delete_confirmation_threshold and not confirm:
                return _fail(
                    f"Delete would affect {total} rows (threshold: "
                    f"{e.delete_confirmation_threshold}). Set confirm=true to proceed."
                )
            if affected and not dry_run:
                assert conn is not None
                conn.execute(f"DELETE FROM {arc_files.physical(measurement)} WHERE {where}")  # noqa: S608
                for name, _ in affected:
                    arc_files.write_file(conn, e.data_dir, measurement, name)
        return JSONResponse(
            {
                "success": True,
                "deleted_count": total,
                "affected_files": len(affected),
                "rewritten_files": 0 if dry_run else len(affected),
                "execution_time_ms": round((time.perf_counter() - started) * 1000, 3),
                "dry_run": dry_run,
                "files_processed": [name.rsplit("/", 1)[-1] for name, _ in affected],
            }
        )

    # -- retention ----------------------------------------------------------------------------

    def _policy(self, request: Request) -> dict[str, Any] | None:
        try:
            return self.policies.get(int(request.path_params["id"]))
        except ValueError:
            return None

    async def _list(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        return JSONResponse(list(self.policies.values()))

    async def _get(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        policy = self._policy(request)
        if policy is None:
            return JSONResponse({"error": "Retention policy not found"}, 404)
        return JSONResponse(policy)

    def _validated(self, body: dict[str, Any] | None, *, creating: bool) -> str | None:
        if body is None:
            return "Invalid request body"
        if creating and not body.get("name"):
            return "name is required"
        if creating and not body.get("database"):
            return "database is required"
        days, buffer = body.get("retention_days"), body.get("buffer_days", 0)
        if not isinstance(days, int) or not isinstance(buffer, int):
            return "Invalid request body: retention_days and buffer_days must be integers"
        if creating and days <= 0:
            return "retention_days must be greater than 0"
        if days <= buffer:
            return "retention_days must be greater than buffer_days"
        return None

    async def _create(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        if not self.emulator.retention_enabled:
            return JSONResponse({"error": "Retention policies are disabled"}, 403)
        body = await _body(request)
        if problem := self._validated(body, creating=True):
            return JSONResponse({"error": problem}, 400)
        assert body is not None
        if any(p["name"] == body["name"] for p in self.policies.values()):
            return JSONResponse(
                {"error": f"Retention policy with name '{body['name']}' already exists"}, 400
            )
        now = _now()
        policy = {
            "id": self._next_id,
            "name": body["name"],
            "database": body["database"],
            "measurement": body.get("measurement"),
            "retention_days": body["retention_days"],
            "buffer_days": body.get("buffer_days", 0),
            "is_active": bool(body.get("is_active", False)),
            "last_execution_time": None,
            "last_execution_status": None,
            "last_deleted_count": None,
            "created_at": now,
            "updated_at": now,
        }
        self.policies[self._next_id] = policy
        self._next_id += 1
        return JSONResponse(policy, 201)

    async def _update(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        body = await _body(request)
        if problem := self._validated(body, creating=False):
            return JSONResponse({"error": problem}, 400)
        policy = self._policy(request)
        if policy is None:
            return JSONResponse({"error": "Retention policy not found"}, 404)
        assert body is not None
        for field in ("name", "database", "measurement", "retention_days", "buffer_days"):
            policy[field] = body.get(field, 0 if field == "buffer_days" else None)
        policy["is_active"] = bool(body.get("is_active", False))
        policy["updated_at"] = _now()
        return JSONResponse(policy)

    async def _remove(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        policy = self._policy(request)
        if policy is None:
            return JSONResponse({"error": "Retention policy not found"}, 404)
        del self.policies[policy["id"]]
        return JSONResponse({"message": "Retention policy deleted successfully"})

    async def _executions(self, request: Request) -> Response:
        if (denied := await self.emulator.guard(request)) is not None:
            return denied
        policy = self._policy(request)
        if policy is None:
            return JSONResponse({"error": "Retention policy not found"}, 404)
        runs = [x for x in self.executions if x["policy_id"] == policy["id"]]
        return JSONResponse({"policy_id": policy["id"], "executions": runs[::-1]})

    async def _execute(self, request: Request) -> Response:
        started = time.perf_counter()
        e = self.emulator
        if (denied := await e.guard(request)) is not None:
            return denied
        body = await _body(request)
        if body is None:
            return JSONResponse({"error": "Invalid request body"}, 400)
        dry_run = bool(body.get("dry_run"))
        if not dry_run and not body.get("confirm"):
            return JSONResponse(
                {"error": "Confirmation required for retention policy execution. Set confirm=true"},
                400,
            )
        policy = self._policy(request)
        if policy is None:
            return JSONResponse({"error": "Retention policy not found"}, 404)
        if not policy["is_active"]:
            return JSONResponse({"error": "Retention policy is not active"}, 400)
        days = int(policy["retention_days"]) + int(policy["buffer_days"])
        cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
        deleted = files = 0
        touched: list[str] = []
        e.flush_due()
        with e.lock:
            conn = e.database(str(policy["database"]))
            names = [] if conn is None else arc_files.measurements(conn)
            if policy["measurement"]:
                names = [m for m in names if m == policy["measurement"]]
            for measurement in names:
                assert conn is not None
                touched.append(measurement)
                for name, newest, rows in arc_files.file_stats(conn, measurement):
                    if newest >= cutoff:
                        continue
                    deleted += rows
                    files += 1
                    if not dry_run:
                        conn.execute(
                            f"DELETE FROM {arc_files.physical(measurement)} WHERE _file = ?",  # noqa: S608
                            [name],
                        )
                        arc_files.write_file(conn, e.data_dir, measurement, name)
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        if not dry_run:
            self.executions.append(
                {
                    "policy_id": policy["id"],
                    "execution_time": _now(),
                    "status": "completed",
                    "deleted_count": deleted,
                    "cutoff_date": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "execution_duration_ms": elapsed,
                    "error_message": None,
                }
            )
            policy.update(
                last_execution_time=_now(),
                last_execution_status="completed",
                last_deleted_count=deleted,
            )
        return JSONResponse(
            {
                "policy_id": policy["id"],
                "policy_name": policy["name"],
                "deleted_count": deleted,
                "files_deleted": files,
                "execution_time_ms": elapsed,
                "dry_run": dry_run,
                "cutoff_date": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "affected_measurements": touched,
            }
        )


def arc_files_name_ok(name: str) -> bool:
    """Arc refuses path characters in database and measurement names."""
    return not any(c in name for c in "/\\") and ".." not in name


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
