"""``memtrace-mcp`` / ``python -m mcp_server``: the MCP server over stdio."""

from __future__ import annotations

from mcp_server.stdio import main

if __name__ == "__main__":  # pragma: no cover
    main()
