"""``memtrace org add-arc | show-arc | remove-arc | copy-data``: Arc bindings from the command
line (commands of the ``org`` group, see :mod:`memtrace.cli.org`).

A running server applies a new, changed or removed binding within 2 seconds (it watches the
metadata DB). See docs/arc.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from memtrace.cli.common import Admin, common_options, load_settings_for, note, run_admin
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT

if TYPE_CHECKING:
    from memtrace.metadata.bindings import ArcBinding


@click.command("add-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--url", required=True, help="Arc base URL, e.g. http://arc.internal:8000.")
@click.option("--database", required=True, help="Arc database for this org (x-arc-database).")
@click.option("--api-key", help="Arc API token, stored encrypted under MEMTRACE_MASTER_KEY.")
@click.option("--measurement", default=DEFAULT_MEASUREMENT, show_default=True)
@click.pass_context
def org_add_arc(
    ctx: click.Context,
    org_ref: str,
    url: str,
    database: str,
    api_key: str | None,
    measurement: str,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Store ORG's memories in Arc (replaces an existing binding). New writes go to Arc; copy
    older embedded memories with `memtrace org copy-data ORG --to arc`."""
    from memtrace.domain.timestamps import now_us

    async def add(admin: Admin) -> ArcBinding:
        found = await admin.org(org_ref)
        return await admin.catalog.put_binding(
            found.id,
            url=url,
            database=database,
            measurement=measurement,
            api_key=api_key,
            now=now_us(),
        )

    settings = load_settings_for(ctx, config_path, data_dir)
    binding = run_admin(settings, add)
    note(
        f"Arc binding of {binding.org_id} saved: {binding.url} database={binding.database} "
        f"measurement={binding.measurement} api_key={'set (encrypted)' if api_key else 'none'}. "
        "Running servers switch within 2 seconds."
    )


@click.command("show-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def org_show_arc(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Show ORG's Arc binding (the API key masked)."""
    from memtrace.auth.crypto import mask_secret

    settings = load_settings_for(ctx, config_path, data_dir)
    binding = run_admin(settings, lambda admin: _binding(admin, org_ref))
    key = "none"
    if binding.api_key_enc:
        key = mask_secret(binding.target().api_key or "")
    click.echo(f"org_id\t{binding.org_id}")
    click.echo(f"url\t{binding.url}")
    click.echo(f"database\t{binding.database}")
    click.echo(f"measurement\t{binding.measurement}")
    click.echo(f"api_key\t{key}")


@click.command("remove-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def org_remove_arc(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Remove ORG's Arc binding; it goes back to the embedded store (data in Arc stays)."""

    async def remove(admin: Admin) -> str:
        found = await admin.org(org_ref)
        await admin.catalog.remove_binding(found.id)
        return found.id

    settings = load_settings_for(ctx, config_path, data_dir)
    org_id = run_admin(settings, remove)
    note(f"Arc binding of {org_id} removed; running servers switch within 2 seconds.")


@click.command("copy-data")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--to", "to", type=click.Choice(["arc"]), required=True, help="Target backend.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.pass_context
def org_copy_data(
    ctx: click.Context,
    org_ref: str,
    to: str,
    batch_size: int,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Copy ORG's embedded memories to its Arc binding (resumable: rerun after a failure)."""
    from memtrace.storage.arc.transfer import copy_to_arc

    async def copy(admin: Admin) -> tuple[str, int, int]:
        binding = await _binding(admin, org_ref)
        copied, total = await copy_to_arc(
            settings,
            binding.org_id,
            binding.target(),
            batch_size=batch_size,
            progress=lambda n: note(f"… {n} memories copied"),
        )
        return binding.org_id, copied, total

    settings = load_settings_for(ctx, config_path, data_dir)
    org_id, copied, total = run_admin(settings, copy)
    note(f"Copy of {org_id} to Arc complete: {copied} copied now, {total} in total.")
    click.echo(total)


async def _binding(admin: Admin, org_ref: str) -> ArcBinding:
    from memtrace.domain.errors import NotFound

    found = await admin.org(org_ref)
    binding = await admin.catalog.get_binding(found.id)
    if binding is None:
        raise NotFound(f"org {found.id} has no Arc binding (run: memtrace org add-arc first)")
    return binding


# ``org migrate`` was this command's name in 0.3.0; "migrate" now means schema migration only.
_old_name = click.Command(
    "migrate",
    params=org_copy_data.params,
    callback=org_copy_data.callback,
    hidden=True,
    help="Old name of `org copy-data` (deprecated).",
)

COMMANDS = (org_add_arc, org_show_arc, org_remove_arc, org_copy_data, _old_name)
