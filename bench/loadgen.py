"""A small asyncio HTTP/1.1 keep-alive load generator.

The server and the load run on the same 2 cores, so the client must be cheap: requests are
pre-encoded bytes on persistent connections and responses are parsed by ``Content-Length``
only (memtrace always sends it). httpx costs ~10x more CPU per request and would measure
the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


class HTTPError(RuntimeError):
    pass


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader = reader
        self._writer = writer
        self._host = host.encode()

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    def close(self) -> None:
        self._writer.close()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1".encode(), b"host: " + self._host]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}".encode())
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(b"content-type: application/json")
            head.append(f"content-length: {len(body)}".encode())
        self._writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise HTTPError(f"response without content-length: {raw[:200]!r}")
        payload = await self._reader.readexactly(length) if length else b""
        return status, payload


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def closed_loop(
    url: str,
    clients: int,
    total: int,
    call: Callable[[Connection, int], Awaitable[None]],
) -> LoadResult:
    """``clients`` connections each sending its next request as soon as the last one returns,
    until ``total`` requests were sent; ``call(conn, i)`` sends request number ``i``."""
    conns = [await Connection.open(url) for _ in range(clients)]
    counter = iter(range(total))
    latencies: list[float] = []

    async def worker(conn: Connection) -> None:
        for i in counter:
            started = time.perf_counter()
            await call(conn, i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(conn) for conn in conns))
    finally:
        for conn in conns:
            conn.close()
    return LoadResult(total, time.perf_counter() - started, latencies)
