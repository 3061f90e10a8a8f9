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

from memtrace.cli.common import common_options, find_org, load_settings_for, metadata_db, note
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT
from memtrace.storage.layout import org_dir

if TYPE_CHECKING:
    from memtrace.config import Settings
    from memtrace.storage.arc.outbox import Outbox, OutboxCounts, ParkedRow

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
    from memtrace.metadata import bindings
    from memtrace.metadata.schema import transaction

    api_key = _arc_api_key(api_key, api_key_file, prompt_api_key)
    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn, transaction(conn):
        found = find_org(conn, org_ref)
        binding = bindings.put_binding(
            conn,
            found.id,
            url=url,
            database=database,
            measurement=measurement,
            api_key=api_key,
            now=now_us(),
        )
    note(
        f"Arc binding of {found.id} saved: {binding.url} database={binding.database} "
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
    from memtrace.domain.errors import NotFound
    from memtrace.metadata import bindings

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn:
        found = find_org(conn, org_ref)
        binding = bindings.get_binding(conn, found.id)
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
    import asyncio

    from memtrace.domain.errors import Conflict
    from memtrace.metadata import bindings
    from memtrace.metadata.schema import transaction

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn:
        org_id = find_org(conn, org_ref).id
    counts = asyncio.run(_outbox_counts(settings, org_id))
    no_store = settings.storage.default_backend == "none"
    if counts.total and (not force or no_store):
        remedy = (
            "the org would have no store to move them to (storage.default_backend = none)"
            if no_store
            else "use --force to move them into the embedded store"
        )
        raise Conflict(
            f"org {org_id} has {counts.total} acknowledged memories Arc is not known to hold "
            f"({counts.pending} waiting to ship, {counts.unverified} awaiting Arc's "
            f"confirmation, {counts.parked} parked); removing the binding would hide them. Let "
            f"a running server ship them (see: memtrace org outbox {org_id}), or {remedy}"
        )
    with metadata_db(settings) as conn, transaction(conn):
        bindings.remove_binding(conn, org_id)
    note(f"Arc binding of {org_id} removed; running servers switch within 2 seconds.")
    if counts.total:
        # A running server also moves what its last writes add before it switches.
        moved = asyncio.run(_move_outbox(settings, org_id))
        note(f"{moved} memories moved from the Arc outbox into the embedded store.")


@asynccontextmanager
async def _outbox(settings: Settings, org_id: str) -> AsyncIterator[Outbox | None]:
    """The org's outbox file, open, or None when the org never had one."""
    from memtrace.storage.arc.outbox import Outbox

    path = org_dir(settings.data_dir, org_id) / "arc_outbox.db"
    if not path.exists():
        yield None
        return
    outbox = Outbox(path, org_id, synchronous=settings.storage.synchronous)
    await outbox.open()
    try:
        yield outbox
    finally:
        await outbox.close()


async def _outbox_counts(settings: Settings, org_id: str) -> OutboxCounts:
    from memtrace.storage.arc.outbox import OutboxCounts

    async with _outbox(settings, org_id) as outbox:
        return await outbox.counts() if outbox is not None else OutboxCounts()


async def _move_outbox(settings: Settings, org_id: str) -> int:
    from memtrace.storage.arc.transfer import move_outbox_to_embedded
    from memtrace.storage.embedded import EmbeddedStore

    directory = org_dir(settings.data_dir, org_id)
    synchronous = settings.storage.synchronous
    store = EmbeddedStore(directory / "memories.db", org_id, synchronous=synchronous)
    await store.open()
    try:
        return await move_outbox_to_embedded(
            directory / "arc_outbox.db", org_id, store, synchronous=synchronous
        )
    finally:
        await store.close()


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
    import asyncio

    from memtrace.domain.timestamps import format_us
    from memtrace.storage.arc.outbox import OutboxCounts

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn:
        org_id = find_org(conn, org_ref).id

    async def run() -> tuple[OutboxCounts, list[ParkedRow], int]:
        async with _outbox(settings, org_id) as outbox:
            if outbox is None:
                return OutboxCounts(), [], 0
            retried = await outbox.unpark() if retry_parked else 0
            return await outbox.counts(), await outbox.parked(limit), retried

    counts, parked, retried = asyncio.run(run())
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
    import asyncio

    from memtrace.domain.errors import InvalidInput
    from memtrace.metadata import bindings
    from memtrace.storage.arc.transfer import copy_to_arc

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn:
        found = find_org(conn, org_ref)
        binding = bindings.get_binding(conn, found.id)
    if binding is None:
        raise InvalidInput(f"org {found.id} has no Arc binding; run: memtrace org add-arc first")
    result = asyncio.run(
        copy_to_arc(settings, found.id, binding.target(), batch_size=batch_size, progress=note)
    )
    note(
        f"Copy of {found.id} to Arc complete: {result.copied} copied now, {result.total} in total."
    )
    if result.parked:
        note(
            f"{result.parked} memories were refused by Arc and parked in the outbox (kept and "
            f"readable): memtrace org outbox {found.id}"
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
