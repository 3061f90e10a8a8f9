"""``memtrace org add-arc | show-arc | remove-arc | copy-data``: Arc bindings from the command
line (commands of the ``org`` group, see :mod:`memtrace.cli.org`).

A running server applies a new, changed or removed binding within 2 seconds (it watches the
metadata DB). See docs/arc.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

import click

from memtrace.cli.common import common_options, find_org, load_settings_for, metadata_db, note
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT

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
@click.pass_context
def org_remove_arc(
    ctx: click.Context, org_ref: str, config_path: Path | None, data_dir: Path | None
) -> None:
    """Remove ORG's Arc binding; it goes back to the embedded store (data in Arc stays)."""
    from memtrace.metadata import bindings
    from memtrace.metadata.schema import transaction

    settings = load_settings_for(ctx, config_path, data_dir)
    with metadata_db(settings) as conn, transaction(conn):
        found = find_org(conn, org_ref)
        bindings.remove_binding(conn, found.id)
    note(f"Arc binding of {found.id} removed; running servers switch within 2 seconds.")


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
    copied, total = asyncio.run(
        copy_to_arc(
            settings,
            found.id,
            binding.target(),
            batch_size=batch_size,
            progress=lambda n: note(f"… {n} memories copied"),
        )
    )
    note(f"Copy of {found.id} to Arc complete: {copied} copied now, {total} in total.")
    click.echo(total)


# ``org migrate`` was this command's name in 0.3.0; "migrate" now means schema migration only.
_old_name = click.Command(
    "migrate",
    params=org_copy_data.params,
    callback=org_copy_data.callback,
    hidden=True,
    help="Old name of `org copy-data` (deprecated).",
)

COMMANDS = (org_add_arc, org_show_arc, org_remove_arc, org_copy_data, _old_name)
