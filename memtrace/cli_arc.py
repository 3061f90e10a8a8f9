"""``memtrace org add-arc | show-arc | remove-arc | migrate``: Arc bindings from the command line.

Registered on the ``org`` group by :mod:`memtrace.cli`. A running server applies a new, changed
or removed binding within 2 seconds (it watches the metadata DB).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from memtrace import arc_bindings as ab
from memtrace import metadata as md
from memtrace.cli import _metadata, _note, _settings, common_options, org
from memtrace.crypto import mask_secret
from memtrace.errors import InvalidInput, NotFound
from memtrace.migrate import migrate_to_arc
from memtrace.timeutil import now_us


def _find(conn: object, org_ref: str) -> md.Org:
    found = md.find_org(conn, org_ref)  # type: ignore[arg-type]
    if found is None:
        raise NotFound(f"org {org_ref!r} not found")
    return found


@org.command("add-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--url", required=True, help="Arc base URL, e.g. http://arc.internal:8000.")
@click.option("--database", required=True, help="Arc database for this org (x-arc-database).")
@click.option("--api-key", help="Arc API token, stored encrypted under MEMTRACE_MASTER_KEY.")
@click.option("--measurement", default=ab.DEFAULT_MEASUREMENT, show_default=True)
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
    older embedded memories with `memtrace org migrate ORG --to arc`."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn, md.transaction(conn):
        found = _find(conn, org_ref)
        binding = ab.put_binding(
            conn,
            found.id,
            url=url,
            database=database,
            measurement=measurement,
            api_key=api_key,
            now=now_us(),
        )
    _note(
        f"Arc binding of {found.id} saved: {binding.url} database={binding.database} "
        f"measurement={binding.measurement} api_key={'set (encrypted)' if api_key else 'none'}. "
        "Running servers switch within 2 seconds."
    )


@org.command("show-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def org_show_arc(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Show ORG's Arc binding (the API key masked)."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn:
        found = _find(conn, org_ref)
        binding = ab.get_binding(conn, found.id)
    if binding is None:
        raise NotFound(f"org {found.id} has no Arc binding (it uses the embedded store)")
    key = "none"
    if binding.api_key_enc:
        key = mask_secret(binding.target().api_key or "")
    click.echo(f"org_id\t{binding.org_id}")
    click.echo(f"url\t{binding.url}")
    click.echo(f"database\t{binding.database}")
    click.echo(f"measurement\t{binding.measurement}")
    click.echo(f"api_key\t{key}")


@org.command("remove-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.pass_context
def org_remove_arc(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Remove ORG's Arc binding; it goes back to the embedded store (data in Arc stays)."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn, md.transaction(conn):
        found = _find(conn, org_ref)
        ab.remove_binding(conn, found.id)
    _note(f"Arc binding of {found.id} removed; running servers switch within 2 seconds.")


@org.command("migrate")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--to", "to", type=click.Choice(["arc"]), required=True, help="Target backend.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.pass_context
def org_migrate(
    ctx: click.Context,
    org_ref: str,
    to: str,
    batch_size: int,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Copy ORG's embedded memories to its Arc binding (resumable: rerun after a failure)."""
    settings = _settings(ctx, config_path, data_dir)
    with _metadata(settings) as conn:
        found = _find(conn, org_ref)
        binding = ab.get_binding(conn, found.id)
    if binding is None:
        raise InvalidInput(f"org {found.id} has no Arc binding; run: memtrace org add-arc first")
    copied, total = asyncio.run(
        migrate_to_arc(
            settings,
            binding,
            batch_size=batch_size,
            progress=lambda n: _note(f"… {n} memories copied"),
        )
    )
    _note(f"Migration of {found.id} to Arc complete: {copied} copied now, {total} in total.")
    click.echo(total)
