"""What every ``memtrace`` command shares: ``--config``/``--data-dir``, settings, the metadata
DB, and one-line errors.

Admin commands write the metadata directly (the SQLite metadata DB, or the cluster's
PostgreSQL in cluster mode) through one interface, :class:`memtrace.metadata.base.MetadataAdmin`;
running servers notice the change within a second (see :mod:`memtrace.runtime`). Output a
script captures (a new org id, a new key) is printed alone on stdout; explanations go to stderr.
Errors are one line on stderr, exit 1.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memtrace.domain.errors import MemtraceError, NotFound

if TYPE_CHECKING:
    from memtrace.config import Settings
    from memtrace.metadata.base import MetadataBackend
    from memtrace.metadata.records import Org
    from memtrace.storage.postgres.db import PgDatabase

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process with status 0 (a requested stop) until a command installs
    its own graceful handler (``serve`` and ``mcp`` do while they serve; uvicorn re-raises the
    signal once drained). Called first by the entry points: as a container's PID 1 a signal
    without a handler is ignored, so ``docker stop`` during a slow start would wait out its
    timeout; and systemd counts any status but 0 after ``systemctl stop`` as a failure."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)


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


def load_settings_for(
    ctx: click.Context, config_path: Path | None, data_dir: Path | None, **overrides: Any
) -> Settings:
    """The settings of this invocation: the command's options, else the root group's."""
    from memtrace.config import load_settings

    parent = ctx.find_root().params
    config_path = config_path or parent.get("config_path")
    data_dir = data_dir or parent.get("data_dir")
    return load_settings(config_path, {"storage.data_dir": data_dir, **overrides})


@contextmanager
def metadata_db(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite metadata DB, migrated (``migrate-from-go`` imports into it;
    every other admin command goes through :func:`run_admin`)."""
    from memtrace.metadata.schema import migrate
    from memtrace.storage.sqlite import connect

    if settings.postgres.url:
        from memtrace.domain.errors import ConfigError

        raise ConfigError(
            "this command works on the SQLite metadata DB; unset postgres.url, then copy the "
            "orgs' memories with memtrace org copy-data (docs/deploy-cluster.md)"
        )
    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.metadata_path, synchronous=settings.storage.synchronous)
    try:
        migrate(conn)
        yield conn
    finally:
        conn.close()


def run_admin(settings: Settings, fn: Callable[[Admin], Awaitable[T]]) -> T:
    """Run ``fn`` against the deployment's metadata: the SQLite metadata DB, or the cluster's
    PostgreSQL when ``postgres.url`` is set (:mod:`memtrace.metadata.backend`). The schema is
    migrated first, as a starting server would."""
    import asyncio

    from memtrace.metadata.backend import create_catalog, create_pg

    async def main() -> T:
        pg = create_pg(settings, server=False)
        catalog = create_catalog(settings, pg)
        try:
            await catalog.open()
            return await fn(Admin(settings, catalog, pg))
        finally:
            await catalog.close()
            if pg is not None:
                await pg.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # called from async code (a test invoking the CLI in process): a loop of its own
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


class Admin:
    """What an admin command works with: the settings, the metadata, the PostgreSQL pool."""

    def __init__(self, settings: Settings, catalog: MetadataBackend, pg: PgDatabase | None):
        self.settings = settings
        self.catalog = catalog
        self.pg = pg

    async def org(self, org_ref: str) -> Org:
        """The org named or identified by ``org_ref``, else :class:`NotFound`."""
        found = await self.catalog.find_org(org_ref)
        if found is None:
            raise NotFound(f"org {org_ref!r} not found")
        return found


def note(message: str) -> None:
    """An explanation for the operator, on stderr (stdout is for what scripts read)."""
    click.echo(message, err=True)
