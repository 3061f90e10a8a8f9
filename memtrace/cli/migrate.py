"""``memtrace migrate-from-go``: take over a Go memtrace deployment (docs/migrating-from-go.md).

Imports the Go metadata DB (orgs, API keys, agents, sessions, Arc bindings; every id kept) into
this deployment's metadata DB. When both are the same file (the Go default
``./data/memtrace.db`` is also ours), the Go DB is first copied aside to ``memtrace.go.db``
beside it, the copy is checked, and our DB takes the original name; moving that copy back is the
rollback. Running the command again changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memtrace.cli.common import common_options, load_settings_for, metadata_db, note

if TYPE_CHECKING:
    from memtrace.metadata.goimport import LegacyArc

GO_DB_KEPT_SUFFIX = ".go.db"


def kept_go_db(path: Path) -> Path:
    """Where a Go DB that had our metadata DB's path is kept (``memtrace.go.db``)."""
    return path.with_name(path.stem + GO_DB_KEPT_SUFFIX)


def legacy_arc(config: Path | None, environ: Mapping[str, str]) -> LegacyArc | None:
    """The legacy ``[arc]`` binding of a Go deployment (its toml, then ``MEMTRACE_ARC_*``), or
    None when it names no url."""
    from memtrace.config_go import go_environ, read_toml
    from memtrace.metadata.goimport import LegacyArc

    values: dict[str, Any] = {}
    if config is not None:
        values.update(read_toml(config).get("legacy_arc", {}))
    values.update(go_environ(environ)[0].get("legacy_arc", {}))
    if not str(values.get("url") or "").strip():
        return None
    return LegacyArc(
        url=str(values["url"]).strip(),
        api_key=str(values.get("api_key") or ""),
        database=str(values.get("database") or ""),
        measurement=str(values.get("measurement") or ""),
    )


def _is_go_file(path: Path) -> bool:
    import sqlite3

    from memtrace.metadata.schema import is_go_database

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return is_go_database(conn)
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _move_aside(go_db: Path, kept: Path) -> None:
    """Copy the Go DB (its WAL included) to ``kept`` with SQLite's backup, check the copy, then
    remove the original and its WAL files."""
    import sqlite3

    from memtrace.domain.errors import ConfigError

    if kept.exists():
        raise ConfigError(f"{kept} already exists; move it away or pass --go-db {kept}")
    source = sqlite3.connect(go_db)
    target = sqlite3.connect(kept)
    try:
        source.backup(target)
        if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ConfigError(f"the copy of {go_db} at {kept} failed its integrity check")
    finally:
        target.close()
        source.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{go_db}{suffix}").unlink(missing_ok=True)


@click.command("migrate-from-go")
@common_options
@click.option(
    "--go-db",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Go server's metadata DB (its auth.db_path, default ./data/memtrace.db).",
)
@click.option(
    "--go-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The Go server's memtrace.toml: its legacy [arc] url/api_key/database/measurement "
    "become org_default's Arc binding when the DB has none.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be imported; change nothing.")
@click.pass_context
def migrate_from_go(
    ctx: click.Context,
    go_db: Path,
    go_config: Path | None,
    dry_run: bool,
    config_path: Path | None = None,
    data_dir: Path | None = None,
) -> None:
    """Import a Go memtrace deployment: orgs, API keys (every mtk_ key keeps working), agents,
    sessions and Arc bindings (decrypted with the same MEMTRACE_MASTER_KEY). Stop the Go server
    first. Prints a summary; running it again changes nothing."""
    from memtrace.domain.timestamps import now_us
    from memtrace.metadata.goimport import import_go, open_go_db

    settings = load_settings_for(ctx, config_path, data_dir)
    ours = settings.metadata_path
    legacy = legacy_arc(go_config, os.environ) if go_config else None
    source = go_db
    same_file = ours.exists() and go_db.exists() and go_db.resolve() == ours.resolve()
    if same_file and not _is_go_file(go_db):
        # A rerun: our DB took the Go DB's name, and the Go DB was kept beside it.
        source = kept_go_db(go_db)
        note(f"{go_db} is already memtrace's metadata DB; reading the Go DB kept at {source}")
    elif same_file:
        kept = kept_go_db(go_db)
        if dry_run:
            note(f"would keep the Go DB as {kept} and create memtrace's metadata DB at {go_db}")
        else:
            _move_aside(go_db, kept)
            note(f"the Go DB is kept as {kept} (rollback: docs/migrating-from-go.md)")
            source = kept
    go = open_go_db(source)
    try:
        if dry_run and same_file and source == go_db:
            import sqlite3

            from memtrace.metadata.schema import migrate

            scratch = sqlite3.connect(":memory:", isolation_level=None)
            try:
                migrate(scratch)
                report = import_go(go, scratch, now=now_us(), dry_run=True, legacy=legacy)
            finally:
                scratch.close()
        else:
            with metadata_db(settings) as target:
                report = import_go(go, target, now=now_us(), dry_run=dry_run, legacy=legacy)
    finally:
        go.close()
    click.echo(f"{source} -> {ours}")
    for line in report.lines(dry_run=dry_run):
        click.echo(line)
