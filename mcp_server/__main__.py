"""``python -m mcp_server``: the MCP server over stdio (the ``memtrace-mcp`` command is
:func:`memtrace.cli.main.mcp_main`, which handles SIGTERM from its first moment)."""

from __future__ import annotations

from mcp_server.stdio import main

if __name__ == "__main__":  # pragma: no cover
    main()
