"""``memtrace-mcp`` / ``python -m mcp_server``: the MCP server over stdio."""

from __future__ import annotations


def main() -> None:
    """Console-script entry point of ``memtrace-mcp``."""
    from memtrace.cli.common import exit_on_sigterm

    exit_on_sigterm()  # before the imports below, which take a while
    from mcp_server.stdio import main as run

    run()


if __name__ == "__main__":  # pragma: no cover
    main()
