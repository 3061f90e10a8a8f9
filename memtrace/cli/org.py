"""``memtrace org create | list | delete`` (and the Arc binding commands of
:mod:`memtrace.cli.arc`): organisations, the tenants."""

from __future__ import annotations

import re
from pathlib import Path

import click

from memtrace.cli import arc, lifecycle
from memtrace.cli.common import (
    Admin,
    MemtraceGroup,
    common_options,
    load_settings_for,
    note,
    run_admin,
)

# Org ids as memtrace makes them (org_ + hex) or org_default; Arc's delete accepts them.
ORG_ID = re.compile(r"^org_[A-Za-z0-9]{1,60}$")


@click.group(cls=MemtraceGroup)
def org() -> None:
    """Create, list and delete organisations (tenants)."""


@org.command("create")
@common_options
@click.argument("name")
@click.option(
    "--id",
    "org_id",
    help="Use this id (org_ + letters/digits), e.g. to import an org exported elsewhere.",
)
@click.pass_context
def org_create(
    ctx: click.Context,
    name: str,
    org_id: str | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Create an org; prints its id alone on stdout."""
    from memtrace.domain.ids import new_org_id
    from memtrace.domain.timestamps import now_us
    from memtrace.metadata.records import require_text

    settings = load_settings_for(ctx, config_path, data_dir)
    name = require_text(name, "name")
    if org_id is not None and not ORG_ID.match(org_id):
        raise click.BadParameter("expected org_ followed by letters or digits", param_hint="--id")
    chosen = org_id or new_org_id()
    created = run_admin(settings, lambda admin: admin.catalog.create_org(chosen, name, now_us()))
    note(
        f"Organization {created.name!r} created. Create a key with: "
        f"memtrace key create --org {created.id} --name <name>"
    )
    click.echo(created.id)


@org.command("list")
@common_options
@click.pass_context
def org_list(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> None:
    """List orgs: id, name, creation time."""
    from memtrace.domain.timestamps import format_seconds

    settings = load_settings_for(ctx, config_path, data_dir)
    orgs = run_admin(settings, lambda admin: admin.catalog.list_orgs())
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
    from memtrace.storage.layout import purge_org_files

    async def delete(admin: Admin) -> tuple[str, int]:
        found = await admin.org(org_ref)
        await admin.catalog.delete_org(found.id)
        purged = 0
        if purge and admin.pg is not None:
            from memtrace.storage.postgres.store import purge_org

            purged = await purge_org(admin.pg, found.id)
        return found.id, purged

    settings = load_settings_for(ctx, config_path, data_dir)
    org_id, purged_rows = run_admin(settings, delete)
    note(f"Organization {org_id} deleted (its keys stop working within 2 seconds).")
    if purge:
        removed = purge_org_files(settings.data_dir, org_id) or purged_rows > 0
        note("Stored memories purged." if removed else "No stored memories to purge.")


for _command in (*arc.COMMANDS, lifecycle.retention):
    org.add_command(_command)
