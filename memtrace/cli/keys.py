"""``memtrace key create | list | revoke`` and ``memtrace keygen master``: API keys and the
master key that encrypts Arc credentials."""

from __future__ import annotations

from pathlib import Path

import click

from memtrace.auth.permissions import DEFAULT_PERMISSIONS
from memtrace.cli.common import (
    Admin,
    MemtraceGroup,
    common_options,
    load_settings_for,
    note,
    run_admin,
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
    from memtrace.auth.keys import ApiKeyRecord, new_api_key
    from memtrace.auth.permissions import parse_permissions
    from memtrace.domain.timestamps import now_us
    from memtrace.metadata.records import require_text

    settings = load_settings_for(ctx, config_path, data_dir)
    perms = parse_permissions(permissions)
    name = require_text(name, "name")

    async def create(admin: Admin) -> tuple[str, ApiKeyRecord, str]:
        found = await admin.org(org_ref)
        record, plain = new_api_key(
            found.id, name, perms, rounds=settings.auth.bcrypt_rounds, now=now_us()
        )
        await admin.catalog.add_key(record)
        return found.id, record, plain

    org_id, record, plain = run_admin(settings, create)
    note(
        f"API key {record.id} created for {org_id} with permissions "
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
    from memtrace.auth.keys import ApiKeyRecord
    from memtrace.domain.timestamps import format_seconds

    async def listing(admin: Admin) -> list[ApiKeyRecord]:
        return await admin.catalog.list_keys((await admin.org(org_ref)).id)

    settings = load_settings_for(ctx, config_path, data_dir)
    keys = run_admin(settings, listing)
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

    settings = load_settings_for(ctx, config_path, data_dir)
    record = run_admin(settings, lambda admin: admin.catalog.revoke_key(key_id, now_us()))
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
