"""The root ``memtrace`` group and the console-script entry point."""

from __future__ import annotations

from pathlib import Path

import click

from memtrace import __version__
from memtrace.cli import lifecycle
from memtrace.cli.common import MemtraceGroup, common_options, exit_on_sigterm
from memtrace.cli.config import config
from memtrace.cli.copying import copy_metadata
from memtrace.cli.keys import key, keygen
from memtrace.cli.migrate import migrate_from_go
from memtrace.cli.org import org
from memtrace.cli.serve import mcp, serve


@click.group(cls=MemtraceGroup, invoke_without_command=True)
@common_options
@click.version_option(__version__, prog_name="memtrace")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> None:
    """memtrace: temporal memory server for fleets of AI agents.

    Without a command, runs `memtrace serve`.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


for _command in (
    serve,
    mcp,
    org,
    key,
    keygen,
    migrate_from_go,
    config,
    copy_metadata,
    *lifecycle.COMMANDS,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    exit_on_sigterm()
    cli.main(args=argv, prog_name="memtrace")


def mcp_main() -> None:
    """Console-script entry point of ``memtrace-mcp``: the MCP server over stdio."""
    exit_on_sigterm()  # before the imports below, which take a while
    from mcp_server.stdio import main as run

    run()
