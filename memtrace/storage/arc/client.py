"""The Arc wire layer: columnar msgpack writes and DuckDB SQL queries over httpx.

The protocol is described in docs/arc.md, "Arc's wire protocol".

httpx + msgpack directly rather than ``arc-tsdb-client``: we need an async client with our own
timeouts and a transport seam for tests, and the official client pulls in pyarrow. Failures are
raised as :class:`ArcUnavailable` (retryable: connection refused, timeouts, 5xx) or
:class:`ArcRejected` (other 4xx: the request or the credentials are wrong), with
:class:`ArcRefused` for a write whose rows Arc refuses (400/413/422). Messages never carry the
API key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import msgpack
import orjson

from memtrace.domain.errors import StorageUnavailable


class ArcUnavailable(StorageUnavailable):
    """Arc could not be reached or answered 5xx; retry later."""

    default_message = "Arc is unavailable"


class ArcRejected(StorageUnavailable):
    """Arc refused the request (bad payload, SQL or credentials); retrying will not help."""

    default_message = "Arc rejected the request"


class ArcRefused(ArcRejected):
    """Arc refused the payload itself (400, 413, 422): the rows, not the connection or the
    credentials, are the problem; sending the same rows again gets the same answer."""

    default_message = "Arc refused the rows"


# Statuses that blame the request body; other 4xx (401/403 credentials, 404/405 a wrong URL)
# blame the binding and must never get rows set aside.
_PAYLOAD_REFUSALS = frozenset({400, 413, 422})


class ArcClient:
    """One Arc database of one org.

    Args:
        url: Arc base URL (``http://host:8000``).
        database: the ``x-arc-database`` to use.
        api_key: Arc token (sent as ``Authorization: Bearer``), or ``None``.
        transport: optional httpx transport (tests use the emulator in process).
    """

    def __init__(
        self,
        url: str,
        database: str,
        api_key: str | None,
        *,
        connect_timeout_s: float = 3.0,
        query_timeout_s: float = 30.0,
        write_timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"x-arc-database": database}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.database = database
        self._query_timeout = httpx.Timeout(query_timeout_s, connect=connect_timeout_s)
        self._write_timeout = httpx.Timeout(write_timeout_s, connect=connect_timeout_s)
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, operation: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._send("POST", operation, path, **kwargs)

    async def _send(self, method: str, operation: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ArcUnavailable(f"Arc {operation} timed out") from None
        except httpx.TransportError as exc:
            raise ArcUnavailable(f"Arc is unreachable ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise ArcRejected(
                f"Arc refused the API key ({response.status_code})",
                hint="check the binding: memtrace org show-arc ORG",
            )
        if response.status_code >= 500:
            raise ArcUnavailable(f"Arc {operation} failed with {response.status_code}")
        if response.status_code >= 400:
            detail = _error(response)
            if operation == "write" and response.status_code in _PAYLOAD_REFUSALS:
                raise ArcRefused(f"Arc refused the rows ({response.status_code}): {detail}")
            raise ArcRejected(f"Arc {operation} rejected ({response.status_code}): {detail}")
        return response

    async def write(self, measurement: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """One columnar msgpack write (all columns the same length); 204 = buffered in Arc."""
        body = msgpack.packb({"m": measurement, "columns": dict(columns)}, use_bin_type=True)
        await self._post(
            "write",
            "/api/v1/write/msgpack",
            content=body,
            headers={"Content-Type": "application/msgpack"},
            timeout=self._write_timeout,
        )

    async def query(self, sql: str) -> list[list[Any]]:
        """Run one SQL statement; the rows (row-major), empty for a measurement with no data."""
        return list((await self._query(sql)).get("data") or [])

    async def query_columns(self, sql: str) -> list[str]:
        """Run one SQL statement; the names of its result columns (none for a measurement
        with no data)."""
        return [str(name) for name in (await self._query(sql)).get("columns") or []]

    async def _query(self, sql: str) -> dict[str, Any]:
        response = await self._post(
            "query",
            "/api/v1/query",
            content=orjson.dumps({"sql": sql}),
            headers={"Content-Type": "application/json"},
            timeout=self._query_timeout,
        )
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ArcUnavailable("Arc answered a query with invalid JSON") from None
        if not isinstance(payload, dict):
            raise ArcUnavailable("Arc answered a query with unexpected JSON")
        return payload

    async def _json(self, method: str, operation: str, path: str, body: Any = None) -> Any:
        """A JSON call of Arc's admin API (delete, flush, retention); the decoded answer."""
        response = await self._send(
            method,
            operation,
            path,
            content=orjson.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"},
            timeout=self._query_timeout,
        )
        try:
            return orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            raise ArcUnavailable(f"Arc answered {operation} with invalid JSON") from None

    async def flush(self) -> None:
        """Make Arc's write buffer queryable (and deletable) now (admin token)."""
        await self._json("POST", "flush", "/api/v1/write/line-protocol/flush")

    async def delete_config(self) -> dict[str, Any]:
        """Arc's delete settings (``enabled``, ``max_rows_per_delete``…; admin token)."""
        return dict(await self._json("GET", "delete", "/api/v1/delete/config"))

    async def delete(self, measurement: str, where: str) -> int:
        """Delete the rows matching ``where`` by rewriting Arc's files; the rows deleted.

        Arc's delete misses rows still in its write buffer: :meth:`flush` first."""
        answer = await self._json(
            "POST",
            "delete",
            "/api/v1/delete",
            {
                "database": self.database,
                "measurement": measurement,
                "where": where,
                "confirm": True,
            },
        )
        if not answer.get("success", False):
            raise ArcUnavailable(f"Arc delete incomplete: {answer.get('error') or 'no detail'}")
        return int(answer.get("deleted_count") or 0)

    async def retention_policies(self) -> list[dict[str, Any]]:
        answer = await self._json("GET", "retention", "/api/v1/retention")
        return [p for p in (answer or []) if isinstance(p, dict)]

    async def put_retention_policy(self, policy_id: int | None, policy: dict[str, Any]) -> int:
        """Create (``policy_id`` None) or replace a retention policy; returns its id."""
        if policy_id is None:
            answer = await self._json("POST", "retention", "/api/v1/retention", policy)
        else:
            answer = await self._json("PUT", "retention", f"/api/v1/retention/{policy_id}", policy)
        return int(answer["id"])

    async def execute_retention(self, policy_id: int) -> int:
        """Run a retention policy now (whole files older than its cutoff); rows deleted."""
        answer = await self._json(
            "POST", "retention", f"/api/v1/retention/{policy_id}/execute", {"confirm": True}
        )
        return int(answer.get("deleted_count") or 0)

    async def ping(self) -> bool:
        """True when Arc's ``/health`` answers 200."""
        try:
            response = await self._http.get("/health", timeout=self._query_timeout)
        except httpx.TransportError:
            return False
        return response.status_code == 200


def _error(response: httpx.Response) -> str:
    try:
        message = orjson.loads(response.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return str(message or response.text[:200] or "no detail")[:300]
