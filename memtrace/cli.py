"""The ``memtrace`` command line: a thin shell over the library (composition root).

Admin commands write the metadata DB directly; a running server notices the change within
half a second (see :mod:`memtrace.runtime`). Output a script captures (a new org id, a new key)
is printed alone on stdout; explanations go to stderr. Errors are one line on stderr, exit 1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from memtrace import __version__
from memtrace import metadata as md
from memtrace.auth import DEFAULT_PERMISSIONS, new_api_key, parse_permissions
from memtrace.config import Settings, load_settings
from memtrace.crypto import generate_master_key
from memtrace.errors import MemtraceError, NotFound
from memtrace.ids import new_org_id
from memtrace.logs import configure_logging
from memtrace.runtime import Runtime
from memtrace.storage.sqlite import connect
from memtrace.tenancy import purge_org_files
from memtrace.timeutil import format_seconds, now_us

F = TypeVar("F", bound=Callable[..., Any])


class MemtraceGroup(click.Group):
    """Turns memtrace errors into click's one-line ``Error: …`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemtraceError as exc:
            raise click.ClickException(exc.message) from None
        except sqlite3.Error as exc:
            raise click.ClickException(f"metadata database error: {exc}") from None


def common_options(fn: F) -> F:
    """``--config`` and ``--data-dir``, accepted by every command."""
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory (default ./data; env MEMTRACE_DATA_DIR).",
    )(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="memtrace.toml to read (default: ./memtrace.toml, /etc/memtrace, ~/.memtrace).",
    )(fn)
    return fn


def _settings(
    ctx: click.Context, config_path: Path | None, data_dir: Path | None, **overrides: Any
) -> Settings:
    parent = ctx.find_root().params
    config_path = config_path or parent.get("config_path")
    data_dir = data_dir or parent.get("data_dir")
    return load_settings(config_path, {"storage.data_dir": data_dir, **overrides})


@contextmanager
def _metadata(settings: Settings) -> Iterator[sqlite3.Connection]:
    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.metadata_path, synchronous=settings.storage.synchronous)
    try:
        md.migrate(conn)
        yield conn
    finally:
        conn.close()


def _note(message: str) -> None:
    click.echo(message, err=True)


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


@cli.command()
@common_options
@click.option("--host", help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 9100; 0 picks a free one).")
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None = None,
    data_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run the REST API on 127.0.0.1:9100 (embedded store by default), with MCP over
    Streamable HTTP at /mcp and SSE at /sse.

    On the first start of a deployment it creates org_default and prints an admin API key,
    once. SIGTERM/SIGINT stop accepting, finish in-flight requests, and close the stores.
    """
    settings = _settings(ctx, config_path, data_dir, **{"server.host": host, "server.port": port})
    run_server(settings)


def run_server(settings: Settings) -> None:
    """Serve the REST app (and the MCP HTTP transports) with uvicorn until SIGTERM/SIGINT."""
    import uvicorn  # the web stack is imported only when serving

    from http_api.app import create_app
    from http_api.serving import uvicorn_options

    configure_logging(settings.log)

    def on_started(admin_key: str | None) -> None:
        if admin_key:
            rule = "=" * 72
            click.echo(
                f"{rule}\nFIRST RUN: admin API key for {md.DEFAULT_ORG_ID} "
                f"(save it now, it is shown only once):\n{admin_key}\n{rule}"
            )
        elif not settings.auth.enabled:
            _note("WARNING: auth is disabled; every request acts as org_default.")

    from mcp_server.http import McpHttpAddon

    runtime = Runtime(settings)
    mcp_http = McpHttpAddon(runtime, host=settings.server.host)
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
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise click.ClickException("server failed to start (see the log above)")


@cli.command()
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

    Remote mode when MEMTRACE_URL is set (with MEMTRACE_API_KEY); otherwise embedded mode on
    the local data dir, which works while `memtrace serve` runs on it.
    """
    settings = _settings(ctx, config_path, data_dir)
    if transport != "stdio":
        run_server(settings)
        return
    from mcp_server.stdio import run

    run(settings)


@cli.group(cls=MemtraceGroup)
def org() -> None:
    """Create, list and delete organisations (tenants)."""


@org.command("create")
@common_options
@click.argument("name")
@click.pass_context
def org_create(
    ctx: click.Context, name: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Create an org; prints its id alone on stdout."""
    settings = _settings(ctx, config_path, data_dir)
    name = md.require_text(name, "name")
    with _metadata(settings) as conn, md.transaction(conn):
        created = md.insert_org(conn, new_org_id(), name, now_us())
    _note(
        f"Organization {created.name!r} created. Create a key with: "
        f"memtrace key create --org {created.id} --name <name>"
    )
    click.echo(created.id)


@org.command("list")
@common_options
@click.pass_context
def org_list(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> None:
    """List orgs: id, name, creation time."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn:
        orgs = md.list_orgs(conn)
    for item in orgs:
        click.echo(f"{item.id}\t{item.name}\t{format_seconds(item.created_at)}")


@org.command("delete")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--purge", is_flag=True, help="Also delete the org's stored memories from disk.")
@click.pass_context
def org_delete(
    ctx: click.Context, org_ref: str, purge: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Delete an org with its keys, agents, sessions and bindings (by id or name)."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn, md.transaction(conn):
        found = md.find_org(conn, org_ref)
        if found is None:
            raise NotFound(f"org {org_ref!r} not found")
        md.delete_org(conn, found.id)
    _note(f"Organization {found.id} deleted (its keys stop working within 2 seconds).")
    if purge:
        removed = purge_org_files(settings.data_dir, found.id)
        _note("Stored memories purged." if removed else "No stored memories to purge.")


@cli.group(cls=MemtraceGroup)
def key() -> None:
    """Create, list and revoke API keys."""


@key.command("create")
@common_options
@click.option("--org", "org_ref", required=True, help="Org id or name the key belongs to.")
@click.option("--name", required=True, help="A label for the key (e.g. acme-prod).")
@click.option(
    "--permissions",
    default=",".join(sorted(DEFAULT_PERMISSIONS)),
    show_default=True,
    help="Comma list of read, write, admin.",
)
@click.pass_context
def key_create(
    ctx: click.Context,
    org_ref: str,
    name: str,
    permissions: str,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Create a key; prints the secret alone on stdout (shown only this once)."""
    settings = _settings(ctx, config_path, data_dir)
    perms = parse_permissions(permissions)
    name = md.require_text(name, "name")
    with _metadata(settings) as conn:
        found = md.find_org(conn, org_ref)
        if found is None:
            raise NotFound(f"org {org_ref!r} not found")
        record, plain = new_api_key(
            found.id, name, perms, rounds=settings.auth.bcrypt_rounds, now=now_us()
        )
        with md.transaction(conn):
            md.insert_key(conn, record)
    _note(
        f"API key {record.id} created for {found.id} with permissions "
        f"{','.join(sorted(perms))}. Save it now: it is shown only once."
    )
    click.echo(plain)


@key.command("list")
@common_options
@click.option("--org", "org_ref", required=True, help="Org id or name.")
@click.pass_context
def key_list(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """List an org's keys: id, name, permissions, created, status (never the secret)."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn:
        found = md.find_org(conn, org_ref)
        if found is None:
            raise NotFound(f"org {org_ref!r} not found")
        keys = md.list_keys(conn, found.id)
    for item in keys:
        status = f"revoked {format_seconds(item.revoked_at)}" if item.revoked_at else "active"
        click.echo(
            f"{item.id}\t{item.name}\t{','.join(sorted(item.permissions))}\t"
            f"{format_seconds(item.created_at)}\t{status}"
        )


@key.command("revoke")
@common_options
@click.argument("key_id")
@click.pass_context
def key_revoke(
    ctx: click.Context, key_id: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Revoke a key by id; running servers refuse it within 2 seconds."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn, md.transaction(conn):
        record = md.revoke_key(conn, key_id, now_us())
    _note(f"API key {record.id} ({record.name}) of {record.org_id} revoked.")


@cli.group(cls=MemtraceGroup)
def keygen() -> None:
    """Generate secrets."""


@keygen.command("master")
@common_options
def keygen_master(config_path: Path | None, data_dir: Path | None) -> None:
    """Print a new MEMTRACE_MASTER_KEY (base64 of 32 random bytes) for Arc key encryption."""
    click.echo(generate_master_key())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="memtrace")


# Arc binding commands live in their own module; importing it registers them on ``org``.
from memtrace import cli_arc as _cli_arc  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    main()
