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
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio

from mcp_server.server import build_server, fixed_ops
from memtrace.config import Settings, load_settings
from memtrace.domain.errors import ConfigError, MemtraceError
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.runtime import Runtime
from memtrace.service_ops import ServiceOps
from memtrace.telemetry.logs import configure_logging
from memtrace.tools import MemoryOps


@asynccontextmanager
async def embedded_ops(
    settings: Settings, org_id: str = DEFAULT_ORG_ID
) -> AsyncIterator[MemoryOps]:
    """Operations on the local data directory, in process (no server needed)."""
    runtime = Runtime(settings)
    await runtime.start()
    try:
        if org_id not in {org.id for org in await runtime.catalog.list_orgs()}:
            raise ConfigError(
                f"{org_id} does not exist in {settings.metadata_path}; embedded mode acts as "
                "that org (use remote mode with MEMTRACE_URL for another org)"
            )
        yield ServiceOps(await runtime.service(org_id))
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


async def serve_stdio(
    env: Mapping[str, str] | None = None, settings: Settings | None = None, local: bool = False
) -> None:
    """Serve the seven tools on stdin/stdout until the client closes the pipe."""
    env = os.environ if env is None else env
    async with ops_from_env(env, settings, local=local) as ops:
        agent_id = env.get("MEMTRACE_AGENT_ID", "").strip() or None
        server = build_server(fixed_ops(ops), default_agent_id=agent_id)
        await server.run_stdio_async()


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
