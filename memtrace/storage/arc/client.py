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
        try:
            response = await self._http.post(path, **kwargs)
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
