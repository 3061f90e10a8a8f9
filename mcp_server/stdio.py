"""The MCP server over stdio (``memtrace-mcp``, ``memtrace mcp``), in one of two modes.

* **remote** when ``MEMTRACE_URL`` or ``MEMTRACE_API_KEY`` is set: every tool calls that
  server's REST API (``MEMTRACE_URL``, default ``http://localhost:9100`` as with the Go
  memtrace-mcp) with ``MEMTRACE_API_KEY`` (the key decides the org and the permissions).
* **embedded** when ``MEMTRACE_DATA_DIR`` is set (or ``memtrace mcp --data-dir/--config``): the
  local data directory is opened in this process as ``org_default`` with every permission, like
  a server with auth disabled. It works while ``memtrace serve`` runs on the same directory:
  both processes use the SQLite files in WAL mode with a busy timeout, and admin changes made
  by one are seen by the other's metadata watcher.

With neither, it stops with one line saying what to set: an MCP client starts it in a working
directory nobody chose, where a private data directory would silently hold the memories.

``MEMTRACE_AGENT_ID`` makes ``agent_id`` optional in every tool. Logs go to stderr only:
stdout carries the protocol.

SIGTERM (``docker stop``, systemd) and SIGINT stop it like the client closing stdin: in-flight
calls end, the stores close, exit status 0. This holds as a container's PID 1 too, where a
signal without a handler is ignored.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

from mcp_server.server import build_server, fixed_ops
from memtrace.config import Settings, load_settings
from memtrace.domain.errors import ConfigError, MemtraceError
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.telemetry.logs import configure_logging
from memtrace.tools import MemoryOps


@asynccontextmanager
async def embedded_ops(
    settings: Settings, org_id: str = DEFAULT_ORG_ID
) -> AsyncIterator[MemoryOps]:
    """Operations on the local data directory, in process (no server needed)."""
    # (imported here: remote mode never loads the server side, ~20% of its start-up)
    from memtrace.runtime import Runtime
    from memtrace.service_ops import ServiceOps

    runtime = Runtime(settings)
    await runtime.start(sweep=False)  # memtrace serve sweeps retention
    try:
        if org_id not in {org.id for org in await runtime.catalog.list_orgs()}:
            raise ConfigError(
                f"{org_id} does not exist in {settings.metadata_path}; embedded mode acts as "
                "that org (use remote mode with MEMTRACE_URL for another org)"
            )
        yield ServiceOps(await runtime.service(org_id), await runtime.lifecycle(org_id, "mcp"))
    finally:
        await runtime.close()


@asynccontextmanager
async def remote_ops(url: str, api_key: str | None) -> AsyncIterator[MemoryOps]:
    """Operations over a memtrace server's REST API."""
    from memtrace.client.async_ import AsyncMemtrace
    from memtrace.client.ops import ClientOps

    if not api_key:
        raise ConfigError("MEMTRACE_API_KEY is required when MEMTRACE_URL is set (remote mode)")
    async with AsyncMemtrace(url, api_key) as client:
        yield ClientOps(client)


DEFAULT_URL = "http://localhost:9100"  # the Go memtrace-mcp's default server
NO_MODE = (
    "set MEMTRACE_URL and MEMTRACE_API_KEY to use a memtrace server (MEMTRACE_API_KEY alone "
    f"means {DEFAULT_URL}), or MEMTRACE_DATA_DIR to open a local data directory"
)


def remote_url(env: Mapping[str, str], *, local: bool = False) -> str | None:
    """The server of remote mode, or None for embedded mode (``local``: a data directory was
    given on the command line).

    Raises:
        ConfigError: neither mode is configured.
    """
    url = env.get("MEMTRACE_URL", "").strip()
    if url:
        return url
    if env.get("MEMTRACE_API_KEY", "").strip():
        return DEFAULT_URL
    if local or any(env.get(name, "").strip() for name in DATA_DIR_ENV):
        return None
    raise ConfigError(NO_MODE)


DATA_DIR_ENV = ("MEMTRACE_DATA_DIR", "MEMTRACE_STORAGE_DATA_DIR")


@asynccontextmanager
async def ops_from_env(
    env: Mapping[str, str], settings: Settings | None = None, *, local: bool = False
) -> AsyncIterator[MemoryOps]:
    """Remote ops (``MEMTRACE_URL`` or ``MEMTRACE_API_KEY``), else embedded ops on the data
    directory named by ``MEMTRACE_DATA_DIR`` (or, with ``local``, by the command line)."""
    url = remote_url(env, local=local)
    if url is not None:
        async with remote_ops(url, env.get("MEMTRACE_API_KEY", "").strip() or None) as ops:
            yield ops
    else:
        async with embedded_ops(settings or load_settings()) as ops:
            yield ops


class _StdinLines:
    """stdin's lines, read by a daemon thread.

    The MCP SDK reads stdin in a worker thread that a cancellation has to wait for, so a
    server blocked on an idle client could not stop on SIGTERM. A daemon thread handing
    lines over a stream lets the serving task be cancelled at once, and the process exit
    with the read still pending.
    """

    def __init__(self, receive: MemoryObjectReceiveStream[str]) -> None:
        self._receive = receive

    @classmethod
    def start(cls) -> _StdinLines:
        send, receive = anyio.create_memory_object_stream[str](0)
        token = anyio.lowlevel.current_token()
        # A reader of our own on a copy of fd 0: at exit Python closes sys.stdin, which would
        # wait on the lock of a buffer this thread still blocks in.
        text = io.TextIOWrapper(open(os.dup(0), "rb"), encoding="utf-8", errors="replace")  # noqa: SIM115

        def pump() -> None:
            try:
                for line in text:
                    anyio.from_thread.run(send.send, line, token=token)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
                return  # the server stopped first (RuntimeError: its event loop is gone)
            with suppress(RuntimeError):
                anyio.from_thread.run_sync(send.close, token=token)

        threading.Thread(target=pump, name="memtrace-mcp-stdin", daemon=True).start()
        return cls(receive)

    def __aiter__(self) -> _StdinLines:
        return self

    def close(self) -> None:
        self._receive.close()  # the thread's next hand-over fails, and it ends

    async def __anext__(self) -> str:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


async def _run_stdio(server: MCPServer) -> None:
    """``MCPServer.run_stdio_async`` with stdin read by :class:`_StdinLines`."""
    lines = _StdinLines.start()
    try:
        async with stdio_server(stdin=cast(Any, lines)) as (read_stream, write_stream):
            lowlevel = server._lowlevel_server  # what run_stdio_async runs, with our stdin
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
    finally:
        lines.close()


async def _cancel_on_sigterm(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def serve_stdio(
    env: Mapping[str, str] | None = None, settings: Settings | None = None, local: bool = False
) -> None:
    """Serve the tools on stdin/stdout until the client closes the pipe or SIGTERM."""
    env = os.environ if env is None else env
    async with ops_from_env(env, settings, local=local) as ops:
        agent_id = env.get("MEMTRACE_AGENT_ID", "").strip() or None
        server = build_server(fixed_ops(ops), default_agent_id=agent_id)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_cancel_on_sigterm, tasks.cancel_scope)
            await _run_stdio(server)
            tasks.cancel_scope.cancel()


def run(settings: Settings | None = None, *, local: bool = False) -> None:
    """Run the stdio server (blocking); memtrace errors end it with one line on stderr.

    ``local``: the command line named a data directory or config (``memtrace mcp``), so
    embedded mode needs no ``MEMTRACE_DATA_DIR``."""
    try:
        remote_url(os.environ, local=local)  # say what to set before reading any settings
        settings = settings or load_settings()
        configure_logging(settings.log)
        anyio.run(serve_stdio, None, settings, local)
    except MemtraceError as exc:
        print(f"memtrace-mcp: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Console-script entry point of ``memtrace-mcp``."""
    run()
