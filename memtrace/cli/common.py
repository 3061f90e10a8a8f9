"""What every ``memtrace`` command shares: ``--config``/``--data-dir``, settings, the metadata
DB, and one-line errors.

Admin commands write the metadata DB directly; a running server notices the change within
half a second (see :mod:`memtrace.runtime`). Output a script captures (a new org id, a new key)
is printed alone on stdout; explanations go to stderr. Errors are one line on stderr, exit 1.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memtrace.domain.errors import MemtraceError, NotFound

if TYPE_CHECKING:
    from memtrace.config import Settings
    from memtrace.metadata.records import Org

F = TypeVar("F", bound=Callable[..., Any])


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
    """A connection to the metadata DB, migrated to the current schema."""
    from memtrace.metadata.schema import migrate
    from memtrace.storage.sqlite import connect

    settings.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.metadata_path, synchronous=settings.storage.synchronous)
    try:
        migrate(conn)
        yield conn
    finally:
        conn.close()


def find_org(conn: sqlite3.Connection, org_ref: str) -> Org:
    """The org named or identified by ``org_ref``, else :class:`NotFound`."""
    from memtrace.metadata import sqlite as md

    found = md.find_org(conn, org_ref)
    if found is None:
        raise NotFound(f"org {org_ref!r} not found")
    return found


def note(message: str) -> None:
    """An explanation for the operator, on stderr (stdout is for what scripts read)."""
    click.echo(message, err=True)
