"""``memtrace key create | list | revoke`` and ``memtrace keygen master``: API keys and the
master key that encrypts Arc credentials."""

from __future__ import annotations

from pathlib import Path

import click

from memtrace.auth.permissions import DEFAULT_PERMISSIONS
from memtrace.cli.common import (
    MemtraceGroup,
    common_options,
    find_org,
    load_settings_for,
    metadata_db,
    note,
)


@click.group(cls=MemtraceGroup)
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
    from memtrace.auth.keys import new_api_key
    from memtrace.auth.permissions import parse_permissions
    from memtrace.domain.timestamps import now_us
    from memtrace.metadata import sqlite as md
    from memtrace.metadata.records import require_text
    from memtrace.metadata.schema import transaction

    settings = load_settings_for(ctx, config_path, data_dir)
    perms = parse_permissions(permissions)
    name = require_text(name, "name")
    with metadata_db(settings) as conn:
        found = find_org(conn, org_ref)
        record, plain = new_api_key(
            found.id, name, perms, rounds=settings.auth.bcrypt_rounds, now=now_us()
        )
        with transaction(conn):
            md.insert_key(conn, record)
    note(
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
    from memtrace.domain.timestamps import format_seconds
    from memtrace.metadata import sqlite as md

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn:
        found = find_org(conn, org_ref)
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
    from memtrace.domain.timestamps import now_us
    from memtrace.metadata import sqlite as md
    from memtrace.metadata.schema import transaction

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn, transaction(conn):
        record = md.revoke_key(conn, key_id, now_us())
    note(f"API key {record.id} ({record.name}) of {record.org_id} revoked.")


@click.group(cls=MemtraceGroup)
def keygen() -> None:
    """Generate secrets."""


@keygen.command("master")
@common_options
def keygen_master(config_path: Path | None, data_dir: Path | None) -> None:
    """Print a new MEMTRACE_MASTER_KEY (base64 of 32 random bytes) for Arc key encryption."""
    from memtrace.auth.crypto import generate_master_key

    click.echo(generate_master_key())
