"""``memtrace serve`` and ``memtrace mcp``: run the server (REST, MCP over HTTP) or the MCP
stdio server. The web stack and the MCP SDK are imported only when one of them runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from memtrace.cli.common import common_options, load_settings_for, note

if TYPE_CHECKING:
    from memtrace.config import Settings


@click.command()
@common_options
@click.option("--host", help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 9100; 0 picks a free one).")
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    help="Server processes sharing the port (default: one per CPU core, at most 8; 1: a single "
    "process).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None = None,
    data_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> None:
    """Run the REST API on 127.0.0.1:9100 (embedded store by default), with MCP over
    Streamable HTTP at /mcp and SSE at /sse, in one process per CPU core.

    On the first start of a deployment it creates org_default and prints an admin API key,
    once. SIGTERM/SIGINT stop accepting, finish in-flight requests, and close the stores.
    """
    overrides = {"server.host": host, "server.port": port, "server.workers": workers}
    run_server(load_settings_for(ctx, config_path, data_dir, **overrides))


def run_server(settings: Settings) -> None:
    """Serve the REST app (and the MCP HTTP transports) with uvicorn until SIGTERM/SIGINT:
    in this process, or in ``server.workers`` processes (:mod:`memtrace.cli.workers`)."""
    from memtrace.cli.workers import default_workers, run_workers
    from memtrace.domain.ids import DEFAULT_ORG_ID
    from memtrace.telemetry.logs import configure_logging

    configure_logging(settings.log)

    def on_started(admin_key: str | None) -> None:
        if admin_key:
            rule = "=" * 72
            click.echo(
                f"{rule}\nFIRST RUN: admin API key for {DEFAULT_ORG_ID} "
                f"(save it now, it is shown only once):\n{admin_key}\n{rule}"
            )
        elif not settings.auth.enabled:
            note("WARNING: auth is disabled; every request acts as org_default.")
            if not settings.server.loopback and settings.server.allowed_hosts is None:
                note(
                    "WARNING: auth is disabled on a non-loopback bind with any Host accepted; "
                    "set server.allowed_hosts (docs/security.md)."
                )

    workers = settings.server.workers or default_workers()
    if workers > 1:
        run_workers(settings, workers, on_started)
        return

    import uvicorn

    from http_api.app import create_app
    from http_api.serving import DelayedExitServer, uvicorn_options
    from mcp_server.http import McpHttpAddon
    from memtrace.runtime import Runtime

    runtime = Runtime(settings)
    mcp_http = McpHttpAddon(runtime)
    app = create_app(runtime, bootstrap_key=True, on_started=on_started, addons=[mcp_http])
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=settings.log.level == "DEBUG",
        timeout_graceful_shutdown=int(settings.server.graceful_timeout_s),
        **uvicorn_options(settings),
    )
    server = DelayedExitServer(config, runtime, settings.server.shutdown_delay_s)
    server.run()
    if not server.started:
        raise click.ClickException("server failed to start (see the log above)")


@click.command()
@common_options
@click.option(
    "--transport",
    type=click.Choice(["stdio", "streamable-http", "sse"]),
    default="stdio",
    show_default=True,
    help="stdio for a local client; the HTTP transports run `memtrace serve` (REST + /mcp + /sse).",
)
@click.pass_context
def mcp(
    ctx: click.Context,
    transport: str,
    config_path: Path | None = None,
    data_dir: Path | None = None,
) -> None:
    """Run the MCP server (same as `memtrace-mcp` for stdio).

    Remote mode when MEMTRACE_URL or MEMTRACE_API_KEY is set (default URL
    http://localhost:9100); embedded mode on --data-dir/--config or MEMTRACE_DATA_DIR, which
    works while `memtrace serve` runs on it.
    """
    settings = load_settings_for(ctx, config_path, data_dir)
    if transport != "stdio":
        run_server(settings)
        return
    from mcp_server.stdio import run

    parent = ctx.find_root().params
    run(
        settings,
        local=any((config_path, data_dir, parent.get("config_path"), parent.get("data_dir"))),
    )
