"""``memtrace org add-arc | show-arc | remove-arc | outbox | copy-data``: Arc bindings and
the outbox from the command line (commands of the ``org`` group, see :mod:`memtrace.cli.org`).

A running server applies a new, changed or removed binding within 2 seconds (it watches the
metadata DB). See docs/arc.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from memtrace.cli.common import Admin, common_options, load_settings_for, note, run_admin
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT

if TYPE_CHECKING:
    from memtrace.metadata.bindings import ArcBinding
    from memtrace.storage.arc.outbox import OutboxCounts, ParkedRow
    from memtrace.storage.arc.outbox_base import OutboxStore

# Not MEMTRACE_ARC_…: that prefix is the [arc] section of the settings.
ARC_API_KEY_ENV = "MEMTRACE_ORG_ARC_API_KEY"


@click.command("add-arc")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--url", required=True, help="Arc base URL, e.g. http://arc.internal:8000.")
@click.option("--database", required=True, help="Arc database for this org (x-arc-database).")
@click.option(
    "--api-key-file",
    type=click.File("r"),
    help="Read the Arc API token from this file ('-': standard input).",
)
@click.option(
    "--prompt-api-key", is_flag=True, help="Ask for the Arc API token (input is not shown)."
)
@click.option(
    "--api-key",
    help=f"The Arc API token itself (visible to other local users in the process list; "
    f"prefer ${ARC_API_KEY_ENV}, --api-key-file or --prompt-api-key).",
)
@click.option("--measurement", default=DEFAULT_MEASUREMENT, show_default=True)
@click.pass_context
def org_add_arc(
    ctx: click.Context,
    org_ref: str,
    url: str,
    database: str,
    api_key_file: TextIO | None,
    prompt_api_key: bool,
    api_key: str | None,
    measurement: str,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Store ORG's memories in Arc (replaces an existing binding). New writes go to Arc; copy
    older embedded memories with `memtrace org copy-data ORG --to arc`.

    The Arc API token (stored encrypted under MEMTRACE_MASTER_KEY) comes from one of
    --api-key-file, --prompt-api-key or --api-key, else $MEMTRACE_ORG_ARC_API_KEY; without
    any, the binding has no token (an Arc without authentication)."""
    from memtrace.domain.timestamps import now_us

    api_key = _arc_api_key(api_key, api_key_file, prompt_api_key)

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


def _arc_api_key(given: str | None, file: TextIO | None, prompt: bool) -> str | None:
    """The Arc API token from the flag the operator chose, else the environment."""
    flags = {"--api-key": given is not None, "--api-key-file": file is not None}
    flags["--prompt-api-key"] = prompt
    chosen = [name for name, used in flags.items() if used]
    if len(chosen) > 1:
        raise click.UsageError(f"give the Arc API token one way, not {' and '.join(chosen)}")
    if file is not None:
        token = file.readline().strip()
        if not token:
            raise click.UsageError("--api-key-file: the file is empty")
        return token
    if prompt:
        return str(click.prompt("Arc API token", hide_input=True)).strip() or None
    return given or os.environ.get(ARC_API_KEY_ENV, "").strip() or None


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
@click.option(
    "--force",
    is_flag=True,
    help="Remove it even though the outbox holds memories Arc is not known to hold; they are "
    "moved into the org's embedded store.",
)
@click.pass_context
def org_remove_arc(
    ctx: click.Context, org_ref: str, force: bool, config_path: Path | None, data_dir: Path | None
) -> None:
    """Remove ORG's Arc binding; it goes back to the embedded store (data in Arc stays).

    Refused while the org's outbox holds memories Arc is not known to hold (not yet shipped,
    not yet confirmed, or parked): they would be neither shipped nor shown any more. Let a
    running server ship them first (`memtrace org outbox ORG` shows what is left), or pass
    --force to move them into the embedded store.
    """
    from memtrace.domain.errors import Conflict
    from memtrace.storage.arc.outbox import OutboxCounts

    settings = load_settings_for(ctx, config_path, data_dir)
    no_store = settings.storage.default_backend == "none"

    async def remove(admin: Admin) -> tuple[str, OutboxCounts, int]:
        org_id = (await admin.org(org_ref)).id
        async with _outbox(admin, org_id) as outbox:
            counts = await outbox.counts() if outbox is not None else OutboxCounts()
        if counts.total and (not force or no_store):
            remedy = (
                "the org would have no store to move them to (storage.default_backend = none)"
                if no_store
                else "use --force to move them into the org's store (embedded or PostgreSQL)"
            )
            raise Conflict(
                f"org {org_id} has {counts.total} acknowledged memories Arc is not known to "
                f"hold ({counts.pending} waiting to ship, {counts.unverified} awaiting Arc's "
                f"confirmation, {counts.parked} parked); removing the binding would hide them. "
                f"Let a running server ship them (see: memtrace org outbox {org_id}), or {remedy}"
            )
        await admin.catalog.remove_binding(org_id)
        # A running server also moves what its last writes add before it switches.
        moved = await _move_outbox(admin, org_id) if counts.total else 0
        return org_id, counts, moved

    org_id, counts, moved = run_admin(settings, remove)
    note(f"Arc binding of {org_id} removed; running servers switch within 2 seconds.")
    if counts.total:
        where = "PostgreSQL" if settings.storage.default_backend == "postgres" else "embedded"
        note(f"{moved} memories moved from the Arc outbox into the {where} store.")


@asynccontextmanager
async def _outbox(admin: Admin, org_id: str) -> AsyncIterator[OutboxStore | None]:
    """The org's outbox, open, or None when the org never had one."""
    from memtrace.storage.placement import existing_outbox

    outbox = await existing_outbox(admin.settings, admin.pg, org_id)
    if outbox is None:
        yield None
        return
    await outbox.open()
    try:
        yield outbox
    finally:
        await outbox.close()


async def _move_outbox(admin: Admin, org_id: str) -> int:
    from memtrace.storage.arc.transfer import move_outbox
    from memtrace.storage.placement import default_store

    store = default_store(admin.settings, admin.pg, org_id)
    await store.open()
    try:
        async with _outbox(admin, org_id) as outbox:
            return await move_outbox(outbox, store) if outbox is not None else 0
    finally:
        await store.close()


async def _binding(admin: Admin, org_ref: str) -> ArcBinding:
    from memtrace.domain.errors import NotFound

    found = await admin.org(org_ref)
    binding = await admin.catalog.get_binding(found.id)
    if binding is None:
        raise NotFound(f"org {found.id} has no Arc binding (run: memtrace org add-arc first)")
    return binding


@click.command("outbox")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--limit", type=click.IntRange(0, 100_000), default=100, show_default=True)
@click.option(
    "--retry-parked",
    is_flag=True,
    help="Ship the parked memories again (e.g. once what Arc refused is fixed).",
)
@click.pass_context
def org_outbox(
    ctx: click.Context,
    org_ref: str,
    limit: int,
    retry_parked: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Show ORG's Arc outbox: memories waiting to ship, awaiting Arc's confirmation, and
    parked (Arc refuses them; kept and readable), then the parked ones (id, time, agent,
    Arc's reason), at most --limit."""
    from memtrace.domain.timestamps import format_us
    from memtrace.storage.arc.outbox import OutboxCounts

    async def run(admin: Admin) -> tuple[OutboxCounts, list[ParkedRow], int]:
        async with _outbox(admin, (await admin.org(org_ref)).id) as outbox:
            if outbox is None:
                return OutboxCounts(), [], 0
            retried = await outbox.unpark() if retry_parked else 0
            return await outbox.counts(), await outbox.parked(limit), retried

    settings = load_settings_for(ctx, config_path, data_dir)
    counts, parked, retried = run_admin(settings, run)
    if retry_parked:
        note(f"{retried} parked memories go back to the queue; a running server ships them.")
    click.echo(f"pending\t{counts.pending}")
    click.echo(f"unverified\t{counts.unverified}")
    click.echo(f"parked\t{counts.parked}")
    for row in parked:
        click.echo(f"{row.id}\t{format_us(row.time)}\t{row.agent_id}\t{row.reason}")


@click.command("copy-data")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option(
    "--to",
    "to",
    type=click.Choice(["arc", "postgres", "embedded"]),
    required=True,
    help="Target: the org's Arc binding, the cluster's PostgreSQL, or the embedded file.",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["embedded", "postgres"]),
    help="Source (default: embedded, or postgres for --to embedded; for --to arc, the org's "
    "store: postgres when storage.default_backend is postgres).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.pass_context
def org_copy_data(
    ctx: click.Context,
    org_ref: str,
    to: str,
    source: str | None,
    batch_size: int,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Copy ORG's memories between its stores (resumable: rerun after a failure; what is
    already in the target is skipped). The PostgreSQL side needs [postgres] url."""
    from memtrace.cli.copying import copy_data

    settings = load_settings_for(ctx, config_path, data_dir)
    org_id, result = run_admin(
        settings,
        lambda admin: copy_data(admin, org_ref, to, source, batch_size=batch_size, progress=note),
    )
    note(f"Copy of {org_id} to {to} complete: {result.copied} copied now, {result.total} in total.")
    if result.parked:
        note(
            f"{result.parked} memories were refused by Arc and parked in the outbox (kept and "
            f"readable): memtrace org outbox {org_id}"
        )
    click.echo(result.total)


# ``org migrate`` was this command's name in 0.3.0; "migrate" now means schema migration only.
_old_name = click.Command(
    "migrate",
    params=org_copy_data.params,
    callback=org_copy_data.callback,
    hidden=True,
    help="Old name of `org copy-data` (deprecated).",
)

COMMANDS = (org_add_arc, org_show_arc, org_remove_arc, org_outbox, org_copy_data, _old_name)
