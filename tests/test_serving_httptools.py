"""`memtrace serve` runs uvicorn's httptools parser with the same abuse limits as h11 had."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from http_api.serving import FastHeaderDeadlineProtocol, uvicorn_options
from memtrace.config import load_settings
from tests.helpers import ServerProcess


def test_serve_uses_httptools_with_the_configured_limits(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "storage.data_dir": tmp_path,
            "server.header_timeout_s": 3,
            "server.max_header_bytes": 2048,
        },
    )
    protocol = uvicorn_options(settings)["http"]
    assert issubclass(protocol, FastHeaderDeadlineProtocol)
    assert (protocol.header_timeout_s, protocol.max_header_bytes) == (3, 2048)


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a header cap for the module's tests (they only send headers)."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("capped") / "data",
        env={"MEMTRACE_SERVER_HEADER_TIMEOUT_S": "5", "MEMTRACE_SERVER_MAX_HEADER_BYTES": "4096"},
    ).start()
    yield proc
    proc.stop()


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_complete_headers_over_the_cap_are_refused(capped_server: ServerProcess) -> None:
    big = b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-big: " + b"a" * 8192 + b"\r\n\r\n"
    assert _exchange(capped_server.port, big).startswith(b"HTTP/1.1 4")
    many = b"GET /health HTTP/1.1\r\nhost: localhost\r\n" + b"x-h: 0123456789\r\n" * 400 + b"\r\n"
    assert _exchange(capped_server.port, many).startswith(b"HTTP/1.1 4")
    fits = (
        b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-ok: "
        + b"a" * 2000
        + b"\r\nconnection: close\r\n\r\n"
    )
    assert _exchange(capped_server.port, fits).startswith(b"HTTP/1.1 200 ")
    assert httpx.get(f"{capped_server.url}/health").status_code == 200


def test_keep_alive_requests_each_get_the_full_header_allowance(
    capped_server: ServerProcess,
) -> None:
    """The cap is per request: many requests on one connection add up to far more."""
    one = b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-pad: " + b"a" * 3000 + b"\r\n\r\n"
    last = b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    reply = _exchange(capped_server.port, one * 5 + last)
    assert reply.count(b"HTTP/1.1 200 ") == 6
